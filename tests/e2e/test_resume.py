"""An interrupted run resumes: train.py killed with SIGKILL mid-epoch, then preempted with SIGTERM, then the same
command again each time, ends with the weights of an uninterrupted run."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sslrs_tf.errors import PREEMPTED_STATUS
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


def test_kill_9_then_sigterm_mid_epoch_and_the_same_command_each_time_end_with_the_uninterrupted_weights(
        small_world, tmp_path):
    # configs/tiny.yaml without validation: 2 epochs of 3 steps, a checkpoint every 2 steps and at epoch ends.
    world = (*small_world, "data.validation_split=null")
    reference, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    train("tiny.yaml", reference, *world)
    command = [sys.executable, ROOT / "train.py", "--config", ROOT / "configs" / "tiny.yaml",
               f"run.dir={interrupted}", *world]
    index = interrupted / "checkpoints" / "checkpoint"
    killed = started_then_signalled(command, index, "ckpt-2", signal.SIGKILL)  # step 2 of 3 of epoch 1
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (interrupted / "export").exists()
    # The same command resumes from checkpoint 2; SIGTERM once the epoch-end checkpoint 3 is written.
    preempted = started_then_signalled(command, index, "ckpt-3", signal.SIGTERM)
    assert preempted.returncode == PREEMPTED_STATUS, preempted.stderr_text[-3000:]
    line = preempted.stderr_text.strip().splitlines()[-1]
    saved = re.fullmatch(r"preempted \(SIGTERM\): checkpoint (\d) saved in .* at epoch 2 of 2, (\d) of its 3 batches "
                         r"done; run the same command to resume from there", line)
    assert saved and saved[1] in ("4", "5") and int(saved[2]) == int(saved[1]) - 3, line
    resumed = run(*command)
    assert f"resuming from {interrupted / 'checkpoints' / f'ckpt-{saved[1]}'}: epoch 2 of 2, batch " \
           f"{int(saved[2]) + 1} of 3" in resumed.stdout
    for a, b in zip(exported_weights(reference, "s1", "s2"), exported_weights(interrupted, "s1", "s2"), strict=True):
        np.testing.assert_array_equal(a, b)
