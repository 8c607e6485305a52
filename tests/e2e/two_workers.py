"""A two-worker training job on 127.0.0.1, interrupted and restarted, as on two machines.

``python -m tests.e2e.two_workers RUN_DIR [train.py overrides...]`` (run by
tests/e2e/test_multi_worker.py):

1. starts one ``train.py`` per worker with ``train.distribution=multi_worker`` and its
   ``TF_CONFIG`` (cluster of two workers on free local ports, this worker's index);
2. kills worker 1 with SIGKILL once the chief has written checkpoint 1, then its peer (a
   cluster manager restarts a multi-worker job as a whole: the peer would wait in a collective);
3. starts both again with the same commands, which resume and finish.

Prints one JSON line: whether the kill landed before the run could finish, and the exit
statuses. Exits non-zero, with the workers' stderr, if a restarted worker failed.
"""

import json
import os
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


def start_workers(run_dir, overrides, attempt, count=2):
    """One train.py process per worker of a fresh local cluster; its output goes to
    ``<run_dir>.<attempt>.worker<index>.log`` (pipes nobody reads would fill and block it)."""
    ports = free_ports(count)
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "tiny.yaml"),
           f"run.dir={run_dir}", *overrides, "train.distribution=multi_worker"]
    workers = []
    for index in range(count):
        cluster = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
        with open(f"{run_dir}.{attempt}.worker{index}.log", "w") as log:
            workers.append(subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, TF_CONFIG=json.dumps(cluster)),
                                            stdout=log, stderr=subprocess.STDOUT))
        workers[-1].log = log.name
    return workers


def main(run_dir, *overrides):
    run_dir = Path(run_dir)
    workers = start_workers(run_dir, overrides, "first")
    index, deadline = run_dir / "checkpoints" / "checkpoint", time.time() + 600
    while time.time() < deadline and all(w.poll() is None for w in workers):
        if index.exists() and "ckpt-1" in index.read_text():
            os.kill(workers[1].pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    first = [workers[1].wait(timeout=60)]
    killed = first[0] == -signal.SIGKILL
    if workers[0].poll() is None:
        workers[0].kill()
    first.insert(0, workers[0].wait())
    exported_before_restart = (run_dir / "export").exists()

    workers = start_workers(run_dir, overrides, "second")
    second = [w.wait(timeout=900) for w in workers]
    outputs = [Path(w.log).read_text() for w in workers]
    resumed = [next((line for line in out.splitlines() if line.startswith("resuming")), None) for out in outputs]
    print(json.dumps({"killed": killed, "first": first, "second": second, "resumed": resumed,
                      "exported_before_restart": exported_before_restart}))
    if any(second):
        sys.stderr.write("\n".join(out[-3000:] for out in outputs))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
