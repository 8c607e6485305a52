"""An interrupted run resumes: train.py killed with SIGKILL mid-epoch, then the same command again."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.e2e.chains import run
from tests.helpers import ROOT, exported_weights

pytestmark = pytest.mark.e2e


def test_kill_9_mid_epoch_then_the_same_command_resumes_to_the_same_weights(pretrained_run, small_world, tmp_path):
    # configs/tiny.yaml: 2 epochs of 3 steps, a checkpoint every 2 steps; pretrained_run is its uninterrupted run.
    reference, killed = pretrained_run, tmp_path / "killed"
    command = [sys.executable, ROOT / "train.py", "--config", ROOT / "configs" / "tiny.yaml", f"run.dir={killed}",
               *small_world]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index, deadline = killed / "checkpoints" / "checkpoint", time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if index.exists() and "ckpt-2" in index.read_text():  # step 2 of 3 of the first epoch
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "export").exists()
    resumed = run(*command)
    assert f"resuming from {killed / 'checkpoints' / 'ckpt-2'}: epoch 1 of 2, batch 3 of 3" in resumed.stdout
    for a, b in zip(exported_weights(reference, "s1", "s2"), exported_weights(killed, "s1", "s2"), strict=True):
        np.testing.assert_array_equal(a, b)
