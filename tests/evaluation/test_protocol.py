"""The comparison protocol: tables against NumPy, the headline sentence, resuming, the CLIs."""

import json
import os
import re

import numpy as np
import pytest
import yaml

from evaluate import main as evaluate_main
from sslrs_tf.data.labels import CLASS_NAMES
from sslrs_tf.errors import UserError
from sslrs_tf.evaluation.protocol import (
    headline,
    load_protocol,
    mean_std,
    protocol_rows,
    report_protocol,
    run_protocol,
    tables,
)
from tests.helpers import exported_weights

CLASSES = ("A", "B")


def result(model, fraction, seed, aa, oa, per_class=(50.0, None), label="single"):
    return {"label": label, "model": model, "fraction": fraction, "seed": seed, "scores": {"AA": aa, "OA": oa},
            "per_class": {c: {"accuracy": v} for c, v in zip(CLASSES, per_class, strict=True)}}


def test_tables_report_mean_and_std_over_seeds():
    results = [result("OnlySen-2", 1.0, s, aa, oa, (a, None)) for s, aa, oa, a in
               [(0, 60.0, 70.0, 40.0), (1, 64.0, 71.0, 44.0), (2, 65.0, 75.0, 48.0)]]
    text = tables(results, CLASSES)
    row = next(line for line in text.splitlines() if line.startswith("| OnlySen-2 | "))
    aa, oa, a = [60.0, 64.0, 65.0], [70.0, 71.0, 75.0], [40.0, 44.0, 48.0]
    expected = [f"{np.mean(v):.1f} ± {np.std(v):.1f}" for v in (a,)] + ["–"] + \
               [f"{np.mean(v):.1f} ± {np.std(v):.1f}" for v in (aa, oa)]
    assert row == f"| OnlySen-2 | {' | '.join(expected)} |"
    assert mean_std([3.0]) == "3.0" and mean_std([None]) == "–"


def test_headline_says_whether_10_percent_pretrained_beats_every_baseline_at_100():
    results = [result("Dual-SimCLR fine-tuned", 0.1, 0, 66.0, 70.0), result("LateFusion", 1.0, 0, 62.0, 65.0),
               result("EarlyFusion", 1.0, 0, 63.0, 66.0)]
    assert "Dual-SimCLR fine-tuned with 10 % of the labels (AA 66.0) beats the best supervised baseline with " \
           "100 % (EarlyFusion, AA 63.0)" in headline(results)
    results[0]["scores"]["AA"] = 61.0
    assert "does NOT beat" in headline(results)
    assert headline(results[1:]) == ""  # no pretrained run: nothing to claim


def test_protocol_file_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"dir": "x", "base": "b.yaml", "pretrained": "r", "models": ["SimCLR-3"]}))
    with pytest.raises(UserError, match="unknown model 'SimCLR-3'"):
        load_protocol(path)
    with pytest.raises(UserError, match="protocol.seed"):
        load_protocol(path, ["seed=[1]"])
    path.write_text(yaml.safe_dump({"dir": "x", "base": "b.yaml", "models": ["Dual-SimCLR frozen"]}))
    with pytest.raises(UserError, match="pretrained.dual_simclr is required for the model 'Dual-SimCLR frozen'"):
        load_protocol(path)
    # A grid over pre-training settings: what it needs, each point validated as a config before anything trains.
    study = ["dir=x"]
    rows = [name for name, _, _ in protocol_rows(load_protocol("protocol_moco_study", study))]
    assert rows[:3] == ["Supervised (full) s2", "MoCo sensor-based s2 [batch_size 32, epochs 100]",
                        "MoCo sensor-based s2 [batch_size 32, epochs 200]"] and len(rows) == 7
    # The augmentation sets as a grid of protocol_moco's all-fusion pre-training.
    sets = load_protocol("protocol_moco", ["pretrained.moco_fusion=null", "grid_method=moco_fusion",
                                           'grid=["model.augmentation=[set1, set2, set3]"]',
                                           "models=[Supervised (full) s1/s2, MoCo all fusion s1/s2]"])
    assert [name for name, _, _ in protocol_rows(sets)] == [
        "Supervised (full) s1/s2", *(f"MoCo all fusion s1/s2 [augmentation {s}]" for s in ("set1", "set2", "set3"))]
    for extra, message in [
        (["grid_method=null"], "grid varies the pre-training of grid_method: set grid_method"),
        (["pretrained.moco_sensor=runs/m"], "pretrained.moco_sensor and the grid both name its runs: set one"),
        (["grid_overrides=[train.epochs=3]"], "grid_overrides sets train.epochs, which the grid varies"),
        (['grid=["train.batch_sise=[8]"]'], "config: unknown key train.batch_sise; did you mean train.batch_size?"),
        (['grid=["train.batch_size=8"]'], "grid entries are KEY=[values]; received 'train.batch_size=8'"),
        (["grid=[train.batch_size=[8, 16]]"], 'grid must be a list of quoted KEY=[values]: grid=["train.batch_size'),
        (["models=[Supervised (full) s2]"], "no model of models starts from moco_sensor"),
    ]:
        with pytest.raises(UserError, match=re.escape(message)):
            load_protocol("protocol_moco_study", [*study, *extra])
    # The MoCo work's 1024 rows count their labelled patches: a fraction on top is refused before anything trains.
    with pytest.raises(UserError, match=r"'Supervised \(1024\) s1' trains on a count of labelled patches"):
        load_protocol("protocol_moco", ["label_fractions=[0.1, 1.0]"])


@pytest.mark.slow
def test_a_small_protocol_runs_reports_and_continues_where_it_stopped(quickstarted, capsys):
    # The protocol the quick start ran (tests/conftest.py): two models at 50 % of the labels.
    pretrained = [f"pretrained={quickstarted.run}"]
    protocol = load_protocol(quickstarted.protocol, pretrained)
    results = run_protocol(protocol, train=None, log=lambda _: None)  # finished: nothing trains again
    assert len(results) == 2 and {r["model"] for r in results} == {"Dual-SimCLR frozen", "OnlySen-2"}
    frozen_half = quickstarted.dir / "single" / "dualsimclr_frozen" / "f0.5" / "seed0"
    card = json.loads((frozen_half / "export" / "card.json").read_text())
    assert card["downstream"] == {"inputs": "late_fusion", "label": "single", "label_fraction": 0.5,
                                  "label_count": None, "label_scheme": None,
                                  "pretrained": str(quickstarted.run.resolve()), "freeze": True,
                                  "classes": list(CLASS_NAMES)}
    # Frozen: the run's exported encoders are exactly the pretrained ones (loaded, then kept).
    for a, b in zip(exported_weights(frozen_half, "s1", "s2"), exported_weights(quickstarted.run, "s1", "s2"),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    # evaluate.py --run on that run (its main): the scores the protocol wrote (deterministic crops).
    written = json.loads((frozen_half / "metrics.json").read_text())
    capsys.readouterr()
    assert evaluate_main(["--run", str(frozen_half)]) == 0
    printed = capsys.readouterr().out
    assert "| Forest |" in printed and "OA" in printed
    assert json.loads((frozen_half / "metrics.json").read_text()) == written
    assert written["split"] == "test" and written["synthetic"] is True
    assert set(written["scores"]) == {"OA", "AA", "F1", "O-F1"}
    assert 0 < sum(written["support"].values()) <= 16  # the small world's test split
    assert (frozen_half / "metrics.md").read_text().startswith(str(frozen_half))

    text = report_protocol(protocol, results)
    assert text.startswith("**SYNTHETIC data**") and "| Dual-SimCLR frozen | " in text
    from matplotlib.image import imread

    assert imread(quickstarted.dir / "label_fractions.png").shape[:2] == (400, 550)

    # Interrupted after the first run: the same command trains only the second.
    others = {p: p.stat().st_mtime_ns for p in quickstarted.dir.rglob("metrics.json")}
    (frozen_half / "metrics.json").unlink()
    # Through evaluate.py's entry point, in-process (cheaper than a subprocess; same code path).
    capsys.readouterr()
    assert evaluate_main(["--protocol", str(quickstarted.protocol), *pretrained]) == 0
    out = capsys.readouterr().out
    assert out.count("done before") == 1 and out.count(": training") == 1
    for p, mtime in others.items():
        assert p.exists() and (p == frozen_half / "metrics.json" or p.stat().st_mtime_ns == mtime)
    assert "written:" in out and os.path.getsize(quickstarted.dir / "tables.md") > 0


def config_of(folder, label, model, fraction):
    return yaml.safe_load((folder / label / model / f"f{fraction:g}" / "seed0" / "config.yaml").read_text())


@pytest.mark.slow
def test_the_quickstart_protocol_smoke_uses_a_named_run_that_exists_instead_of_pretraining(pretrained_run, tmp_path,
                                                                                         capsys, monkeypatch):
    # `--smoke` of the shipped protocol_quickstart, its `pretrained:` pointed at a finished run: nothing is
    # pre-trained on the fly, the frozen row keeps that run's encoders, every run is the miniature one.
    monkeypatch.chdir(tmp_path)
    assert evaluate_main(["--protocol", "protocol_quickstart", "--smoke", f"dir={tmp_path / 'qs'}",
                          f"pretrained={pretrained_run}", "models=[Dual-SimCLR frozen]",
                          "label_fractions=[0.5]"]) == 0
    printed, out = capsys.readouterr().out, tmp_path / "qs_smoke"
    assert "smoke: pre-training" not in printed and not (out / "pretrained").exists()
    results = json.loads((out / "results.json").read_text())
    assert [(r["model"], r["fraction"], r["synthetic"]) for r in results] == [("Dual-SimCLR frozen", 0.5, True)]
    assert (out / "tables.md").read_text().startswith("**SYNTHETIC data**")
    frozen = config_of(out, "single", "dualsimclr_frozen", 0.5)
    assert frozen["model"]["pretrained"] == str(pretrained_run.resolve()) and frozen["model"]["freeze"] is True
    assert (frozen["data"]["crop_size"], frozen["train"]["epochs"], frozen["data"]["synthetic"]["size"]) == (32, 1, 32)
    for a, b in zip(exported_weights(pretrained_run, "s1", "s2"),
                    exported_weights(out / "single" / "dualsimclr_frozen" / "f0.5" / "seed0", "s1", "s2"), strict=True):
        np.testing.assert_array_equal(a, b)
