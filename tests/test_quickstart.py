"""`make quickstart`'s entry point on the real synthetic world, end to end (slow)."""

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quickstart_builds_the_world_once_and_reuses_it(tmp_path):
    args = [sys.executable, "-m", "sslrs_tf.quickstart", "--world", str(tmp_path / "world"),
            "--data-dir", str(tmp_path / "tfds")]
    first = subprocess.run(args, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "writing the synthetic world" in first.stdout and "SYNTHETIC" in first.stdout
    assert "a training batch" in first.stdout and "s2 (32, 48, 48, 13)" in first.stdout
    second = subprocess.run(args, capture_output=True, text=True)
    assert second.returncode == 0 and "writing the synthetic world" not in second.stdout
    assert "sen12ms/synthetic64/1.0.0" in second.stdout
