"""An interrupted run resumes: train.py killed with SIGKILL in the middle of a checkpoint write, then stopped by
a full disk, then the same command again, ends with the weights of an uninterrupted run."""

import resource
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.e2e.chains import train
from tests.helpers import ROOT, exported_weights

pytestmark = pytest.mark.e2e


def file_size_limit(size):
    """A subprocess's ``preexec_fn``: its files cannot grow past `size` bytes (``ulimit -f``), as on a full disk."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def test_killed_while_writing_a_checkpoint_then_out_of_disk_the_same_command_resumes_to_the_same_weights(
        small_world, tmp_path):
    # configs/tiny.yaml without validation: 2 epochs of 3 steps, a checkpoint every 2 steps and at epoch ends
    # (ckpt-2 mid-epoch, ckpt-3 at the first epoch's end). (SIGTERM: tests/training/test_callbacks.py and the
    # two-worker test.)
    world = (*small_world, "data.validation_split=null")
    reference, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    train("tiny.yaml", reference, *world)
    arguments = ["--config", ROOT / "configs" / "tiny.yaml", f"run.dir={interrupted}", *world]
    command = [sys.executable, ROOT / "train.py", *arguments]
    checkpoints = interrupted / "checkpoints"

    # 1. SIGKILL once ckpt-3's files are written, before the index lists it (tests/e2e/killed_in_write.py).
    killed = subprocess.run([sys.executable, "-m", "tests.e2e.killed_in_write", "3", *map(str, arguments)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert tf.train.latest_checkpoint(str(checkpoints)) == str(checkpoints / "ckpt-2")
    assert (checkpoints / "ckpt-3.index").is_file()  # written, never listed
    assert not (interrupted / "export").exists()

    # 2. The same command on a disk with no room for a checkpoint: it resumes, cannot write ckpt-3, says so.
    data = next(checkpoints.glob("ckpt-2.data-*"))
    full = subprocess.run([str(a) for a in command], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          preexec_fn=file_size_limit(data.stat().st_size // 2))
    resuming = f"resuming from {checkpoints / 'ckpt-2'}: epoch 1 of 2, batch 3 of 3"
    assert full.returncode == 2 and resuming in full.stdout, full.stderr[-3000:]
    # Its whole standard error: the line (TensorFlow's own notes about the failed write and its start-up are not shown).
    assert full.stderr == (f"error: cannot write checkpoint 3 in {checkpoints} (File too large); ckpt-2 is intact: "
                           "make room and run the same command to resume from it\n"), full.stderr[-3000:]
    assert tf.train.latest_checkpoint(str(checkpoints)) == str(checkpoints / "ckpt-2")

    # 3. With room, the same command (train.py's main, in this process) resumes from ckpt-2 and ends where the
    # uninterrupted run (also in this process) did.
    assert resuming in train("tiny.yaml", interrupted, *world)
    for a, b in zip(exported_weights(reference, "s1", "s2"), exported_weights(interrupted, "s1", "s2"), strict=True):
        np.testing.assert_array_equal(a, b)
