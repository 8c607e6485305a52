"""`make quickstart`'s entry point end to end, shortened (slow).

The pre-training step is the tiny run the session already trained (a copy of its
finished run directory: the quick start resumes it and only exports), so this
test pays for the probe and a one-run protocol, not for pre-training again.
"""

import shutil

import pytest
import yaml

from sslrs_tf.quickstart import main as quickstart_main
from tests.helpers import ROOT


@pytest.mark.slow
def test_quickstart_probes_then_runs_the_protocol_and_prints_its_tables(tmp_path, small_world, pretrained_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(pretrained_run, run)
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(yaml.safe_dump({
        "dir": str(tmp_path / "protocol"), "base": str(ROOT / "configs" / "finetune_tiny.yaml"),
        "models": ["Dual-SimCLR frozen"], "label_fractions": [1.0], "seeds": [0],
        "overrides": [*small_world, "train.epochs=1"]}))
    # In-process (the entry point's main; `python -m sslrs_tf.quickstart` adds only the interpreter).
    code = quickstart_main(["--config", str(ROOT / "configs" / "tiny.yaml"), "--protocol", str(protocol),
                            f"run.dir={run}", *small_world])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert "SYNTHETIC" in out and "| random initialisation" in out and "| Dual-SimCLR pre-trained" in out
    rows = [line for line in out.splitlines() if line.startswith("| random") or line.startswith("| Dual-SimCLR pre")]
    for row in rows:
        oa, aa = (float(v) for v in row.strip(" |").split("|")[1:])
        assert 0 <= oa <= 100 and 0 <= aa <= 100
    # The protocol (one model here; tests/evaluation/test_protocol.py compares several): its table and plot.
    assert "| Dual-SimCLR frozen |" in out
    plot = tmp_path / "protocol" / "label_fractions.png"
    assert f"plot: {plot}" in out and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frozen = tmp_path / "protocol" / "single" / "dualsimclr_frozen" / "f1" / "seed0" / "config.yaml"
    assert yaml.safe_load(frozen.read_text())["model"]["pretrained"] == str(run)  # starts from the quick start's run
