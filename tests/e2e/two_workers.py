"""A two-worker training job on 127.0.0.1, preempted and restarted, as on two machines.

``python -m tests.e2e.two_workers CONFIG RUN_DIR [train.py overrides...]`` (run by
tests/e2e/test_multi_worker.py; CONFIG a shipped config's file name):

1. starts one ``train.py`` per worker with ``train.distribution=multi_worker`` and its
   ``TF_CONFIG`` (cluster of two workers on free local ports, this worker's index);
2. sends worker 1 SIGTERM once the chief has written checkpoint 1, as a cloud preempts a
   machine: both workers save at the same step and stop (exit status 42); checkpoint 1 is
   copied to ``<RUN_DIR>_step1``;
3. starts both again with the same commands, which resume and finish.

Prints one JSON line: whether the signal landed before the run could finish, the exit statuses,
and each worker's stop line of the first attempt and its resume line. Exits non-zero, with the
workers' output, if a restarted worker failed.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_ports(n):
    """`n` local TCP ports free right now."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(config, run_dir, overrides, attempt, count=2):
    """One train.py process per worker of a fresh local cluster; its output goes to
    ``<run_dir>.<attempt>.worker<index>.log`` (pipes nobody reads would fill and block it)."""
    ports = free_ports(count)
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / config),
           f"run.dir={run_dir}", *overrides, "train.distribution=multi_worker"]
    workers = []
    for index in range(count):
        cluster = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        with open(f"{run_dir}.{attempt}.worker{index}.log", "w") as log:
            workers.append(subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, TF_CONFIG=json.dumps(cluster)),
                                            stdout=log, stderr=subprocess.STDOUT))
        workers[-1].log = log.name
    return workers


def stop_line(worker):
    """The line a worker printed when it stopped on the signal (else its last line). TF may log after it:
    a peer that left first is unreachable."""
    lines = Path(worker.log).read_text().strip().splitlines()
    return next((x for x in lines if x.startswith("preempted")), lines[-1] if lines else "")


def main(config, run_dir, *overrides):
    run_dir = Path(run_dir)
    workers = start_workers(config, run_dir, overrides, "first")
    index, deadline = run_dir / "checkpoints" / "checkpoint", time.time() + 600
    signalled = False
    while time.time() < deadline and all(w.poll() is None for w in workers):
        if index.exists() and "ckpt-1" in index.read_text():
            os.kill(workers[1].pid, signal.SIGTERM)
            # The weights after one step, kept for the test (the run deletes old checkpoints).
            step1 = run_dir.parent / f"{run_dir.name}_step1"
            step1.mkdir()
            for f in run_dir.glob("checkpoints/ckpt-1.*"):
                shutil.copy(f, step1)
            signalled = True
            break
        time.sleep(0.01)
    first = [w.wait(timeout=300) for w in workers]
    stopped = [stop_line(w) for w in workers]
    exported_before_restart = (run_dir / "export").exists()

    workers = start_workers(config, run_dir, overrides, "second")
    second = [w.wait(timeout=900) for w in workers]
    outputs = [Path(w.log).read_text() for w in workers]
    resumed = [next((line for line in out.splitlines() if line.startswith("resuming")), None) for out in outputs]
    print(json.dumps({"signalled": signalled, "first": first, "stopped": stopped, "second": second,
                      "resumed": resumed, "exported_before_restart": exported_before_restart}))
    if any(second):
        sys.stderr.write("\n".join(out[-3000:] for out in outputs))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
