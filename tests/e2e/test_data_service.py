"""data.service end to end: a tf.data dispatcher and two workers started as processes with their command line on
127.0.0.1, a train.py process that trains through them and exports, and what happens when a worker dies."""

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest

from tests.helpers import ROOT, card_of

pytestmark = pytest.mark.e2e


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A process whose output lines are read as they come (merged standard output and error)."""

    def __init__(self, *args):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.popen = subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines, self.seen = queue.Queue(), []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text, timeout=180):
        """Reads lines until one contains `text`; returns it (fails with what was printed otherwise)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                line = None
            if line is None:
                pytest.fail(f"never printed {text!r}:\n" + "\n".join(self.seen[-40:]))
            self.seen.append(line)
            if text in line:
                return line

    def finish(self, timeout=600):
        """Waits for the end; returns (status, everything printed)."""
        status = self.popen.wait(timeout=timeout)
        while (line := self.lines.get(timeout=10)) is not None:
            self.seen.append(line)
        return status, "\n".join(self.seen)

    def stop(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def test_train_py_trains_through_two_worker_processes_and_goes_on_when_one_dies(small_world, tmp_path):
    port = free_port()
    started = []
    try:
        dispatcher = Process("-m", "sslrs_tf.data.service", "dispatcher", "--port", port)
        started.append(dispatcher)
        assert dispatcher.wait_for("tf.data dispatcher serving at grpc://").endswith(f":{port}")
        workers = [Process("-m", "sslrs_tf.data.service", "worker", "--dispatcher", f"127.0.0.1:{port}",
                           "--host", "127.0.0.1") for _ in range(2)]
        started += workers
        for w in workers:
            w.wait_for(f"for dispatcher 127.0.0.1:{port}")
        run_dir = tmp_path / "run"
        trainer = Process(ROOT / "train.py", "--config", "tiny", f"run.dir={run_dir}", *small_world,
                          f"data.service=grpc://127.0.0.1:{port}", "train.epochs=4", "train.steps_per_epoch=4",
                          "data.validation_split=null")
        started.append(trainer)
        trainer.wait_for("Epoch 2/4")  # both workers have been handed an epoch by now
        workers[0].popen.send_signal(signal.SIGKILL)
        status, printed = trainer.finish()
        assert status == 0, printed[-3000:]
        assert "done: encoders and card.json in" in printed
        # Every epoch trained its 4 batches (Keras's progress lines, without their colours).
        epochs = re.split(r"Epoch \d/4", re.sub(r"\x1b\[[0-9;]*m", "", printed))[1:]
        assert len(epochs) == 4 and all(re.search(r"^4/4 ", e, re.M) for e in epochs), printed[-3000:]
        assert card_of(run_dir)["training"]["epochs"] == 4
    finally:
        for p in started:
            p.stop()
