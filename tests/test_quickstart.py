"""`make quickstart`'s entry point end to end, shortened (slow).

The run itself is the session fixture `quickstarted` (tests/conftest.py): the pre-training
step is a copy of the tiny run the session already trained (the quick start resumes it and
only exports), so it pays for the probe and a small protocol, not for pre-training again.
"""

import pytest
import yaml


@pytest.mark.slow
def test_quickstart_probes_then_runs_the_protocol_and_prints_its_tables(quickstarted):
    out = quickstarted.out
    assert "SYNTHETIC" in out and "| random initialisation" in out and "| Dual-SimCLR pre-trained" in out
    rows = [line for line in out.splitlines() if line.startswith("| random") or line.startswith("| Dual-SimCLR pre")]
    for row in rows:
        oa, aa = (float(v) for v in row.strip(" |").split("|")[1:])
        assert 0 <= oa <= 100 and 0 <= aa <= 100
    # The protocol (tests/evaluation/test_protocol.py checks its runs): its tables and plot.
    assert "| Dual-SimCLR frozen |" in out and "| OnlySen-2 |" in out
    plot = quickstarted.dir / "label_fractions.png"
    assert f"plot: {plot}" in out and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    frozen = quickstarted.dir / "single" / "dualsimclr_frozen" / "f0.5" / "seed0" / "config.yaml"
    # The protocol's pretrained models start from the quick start's run.
    assert yaml.safe_load(frozen.read_text())["model"]["pretrained"] == str(quickstarted.run)
