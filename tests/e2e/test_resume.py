"""An interrupted run resumes: train.py killed with SIGKILL mid-epoch, then the same command again, ends with the
weights of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.e2e.chains import run, train
from tests.helpers import ROOT, exported_weights

pytestmark = pytest.mark.e2e


def started_then_signalled(command, index, checkpoint, sig):
    """Starts `command`, sends `sig` once `checkpoint` is listed in the checkpoint `index`; returns the
    finished process (stderr captured)."""
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if index.exists() and checkpoint in index.read_text():
            os.kill(process.pid, sig)
            break
        time.sleep(0.01)
    process.stderr_text = process.communicate()[1]
    return process


def test_kill_9_mid_epoch_then_the_same_command_resumes_to_the_same_weights(small_world, tmp_path):
    # configs/tiny.yaml without validation: 2 epochs of 3 steps, a checkpoint every 2 steps and at epoch ends.
    # (A SIGTERM mid-run: tests/training/test_callbacks.py and the two-worker test.)
    world = (*small_world, "data.validation_split=null")
    reference, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    train("tiny.yaml", reference, *world)
    command = [sys.executable, ROOT / "train.py", "--config", ROOT / "configs" / "tiny.yaml",
               f"run.dir={interrupted}", *world]
    index = interrupted / "checkpoints" / "checkpoint"
    killed = started_then_signalled(command, index, "ckpt-2", signal.SIGKILL)  # step 2 of 3 of epoch 1
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (interrupted / "export").exists()
    resumed = run(*command)
    assert f"resuming from {interrupted / 'checkpoints' / 'ckpt-2'}: epoch 1 of 2, batch 3 of 3" in resumed.stdout
    for a, b in zip(exported_weights(reference, "s1", "s2"), exported_weights(interrupted, "s1", "s2"), strict=True):
        np.testing.assert_array_equal(a, b)
