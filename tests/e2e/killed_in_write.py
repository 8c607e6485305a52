"""``train.py`` killed with SIGKILL in the middle of writing a checkpoint.

``python -m tests.e2e.killed_in_write N [train.py arguments...]`` (run by tests/e2e/test_resume.py)
runs train.py's entry point in this process and kills the process when checkpoint N's files are
written and the index is about to list it: of all the moments a kill can hit a checkpoint write,
the one that leaves the most behind (complete files the index does not name). A kill found by
polling would land there only by chance.
"""

import os
import signal
import sys

import tensorflow as tf

from sslrs_tf.cli import train_main


def main(number, *argv):
    record = tf.train.CheckpointManager._record_state

    def killed_before_listing(manager):
        if manager.latest_checkpoint.endswith(f"ckpt-{number}"):
            os.kill(os.getpid(), signal.SIGKILL)
        record(manager)

    tf.train.CheckpointManager._record_state = killed_before_listing
    return train_main(list(argv))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
