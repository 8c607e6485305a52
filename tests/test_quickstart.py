"""`make quickstart`'s entry point end to end, shortened by overrides (slow)."""

import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_quickstart_pretrains_and_prints_the_probe_table(tmp_path, small_world):
    cmd = [sys.executable, "-m", "sslrs_tf.quickstart", f"run.dir={tmp_path / 'run'}", *small_world,
           "train.epochs=1", "train.steps_per_epoch=2", "data.crop_size=32"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "SYNTHETIC" in out and "| random initialisation" in out and "| Dual-SimCLR pre-trained" in out
    rows = [l for l in out.splitlines() if l.startswith("| ") and "encoders" not in l]
    for row in rows:
        oa, aa = (float(v) for v in row.strip(" |").split("|")[1:])
        assert 0 <= oa <= 100 and 0 <= aa <= 100
    assert (tmp_path / "run" / "export" / "card.json").exists()
