"""Shipped protocols' smokes, through evaluate.py's main in this process.

``--protocol protocol_swin --smoke``: the CVPR segmentation protocol in miniature on a synthetic world, its
Dual-Swin pre-training made on the fly (configs/dual_swin.yaml), SwinUNet fine-tuned from it
(configs/finetune_swin_segmentation.yaml), the UNet, their ensemble and the qualitative figure, as a user
checks it before a long GPU job; then the CVPR classification protocol's smoke on that pre-training. The
SEN12MS MoCo work's protocol and its batch size x epochs study; the ISPRS protocol's.

To stay within the suite's time: one label fraction, the ensemble's models only, the UNet alone in the figure
(the figure's panels, ensemble included: tests/evaluation/test_ensemble.py), one classification row (the
quick-start protocol's smoke is in tests/evaluation/test_protocol.py).
"""

import contextlib
import json

import keras
import numpy as np
import pytest
import yaml

from tests.e2e.chains import evaluate
from tests.helpers import exported_weights

pytestmark = pytest.mark.e2e


def smoke(protocol, folder, *overrides):
    """Runs the smoke of a shipped protocol (by name) into ``folder_smoke``; returns what it printed and that
    folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(folder.parent):  # where a user starts it: nothing may land in the working directory
        printed = evaluate("--protocol", protocol, "--smoke", f"dir={folder}", *overrides)
    assert all(p.name.endswith("_smoke") for p in folder.parent.iterdir())
    return printed, folder.parent / f"{folder.name}_smoke"


def test_the_swin_protocols_smokes_write_the_ensemble_row_the_qualitative_figure_and_the_frozen_probe(tmp_path):
    models = "[UNet, SwinUNet fine-tuned, Ensemble UNet + SwinUNet fine-tuned]"
    printed, out = smoke("protocol_swin", tmp_path / "swin", f"models={models}", "figure=[UNet]",
                         "label_fractions=[1.0]", "figure_patches=2")
    card = json.loads((out / "pretrained" / "dual_simclr" / "export" / "card.json").read_text())
    assert card["backbone"] == "swin_micro" and card["encoders"]["s1"]["input_shape"] == [None, 32, 32, 2]
    ensemble = json.loads((out / "segmentation" / "ensemble_unet__swinunet_finetuned" / "f1" / "seed0" /
                           "metrics.json").read_text())
    assert [m.split("/")[-3] for m in ensemble["members"]] == ["unet", "swinunet_finetuned"]
    assert list(ensemble["scores"]) == ["OA", "AA", "mIoU"]
    assert "| Ensemble UNet + SwinUNet fine-tuned |" in (out / "tables.md").read_text()
    assert (out / "qualitative.png").stat().st_size > 10_000
    assert "qualitative.png" in printed
    # The fine-tuned SwinUNet's metrics: averages over the classes present, from the same counts.
    metrics = json.loads((out / "segmentation" / "swinunet_finetuned" / "f1" / "seed0" / "metrics.json").read_text())
    present = [v for v in metrics["per_class"].values() if v["IoU"] is not None]
    assert present and all(set(v) == {"accuracy", "IoU"} for v in present)
    assert metrics["scores"]["mIoU"] == pytest.approx(np.mean([v["IoU"] for v in present]), abs=0.01)
    assert metrics["scores"]["AA"] == pytest.approx(np.mean([v["accuracy"] for v in present]), abs=0.01)
    assert 0 < sum(metrics["support"].values()) <= 16 * 32 * 32  # the smoke world's 16 test patches of 32 px

    # The classification protocol's smoke on that Dual-Swin run (named: not pre-trained again), multi-label.
    pretrained = out / "pretrained" / "dual_simclr"
    printed, out = smoke("protocol_swin_classification", tmp_path / "swin_cls",
                         f"pretrained.dual_simclr={pretrained}", "models=[Dual-Swin frozen]", "labels=[multi]",
                         "label_fractions=[1.0]")
    assert "smoke: pre-training" not in printed and "| Dual-Swin frozen |" in (out / "tables.md").read_text()
    probe = out / "multi" / "dualswin_frozen" / "f1" / "seed0"
    results = json.loads((out / "results.json").read_text())
    assert [(r["model"], list(r["scores"])) for r in results] == [("Dual-Swin frozen", ["F1", "O-F1"])]
    card = json.loads((probe / "export" / "card.json").read_text())
    assert card["backbone"] == "swin_micro" and card["downstream"]["freeze"] is True
    for a, b in zip(exported_weights(pretrained, "s1", "s2"), exported_weights(probe, "s1", "s2"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_moco_protocols_smoke_fine_tunes_partial_fusion_and_the_1k_baseline_on_sen12ms_scenes(tmp_path):
    # Two of its rows (suite time): the partial-fusion run is pre-trained on the fly, then its stacked encoder and
    # adapter fine-tuned on S1 alone (S2's bands zero); the supervised baseline trains on (at most) 1 024 labelled
    # patches. Both are tested on the hold-out scenes in the simplified IGBP scheme's 10 classes.
    from sslrs_tf.data.labels import SCHEMES

    printed, out = smoke("protocol_moco", tmp_path / "moco", "models=[Supervised (1024) s2, MoCo partial fusion s1]",
                         "labels=[single]")
    assert "smoke: pre-training moco_partial_fusion (moco_partial_fusion.yaml" in printed
    pretraining = json.loads((out / "pretrained" / "moco_partial_fusion" / "export" / "card.json").read_text())
    assert np.isfinite(pretraining["final_metrics"]["loss"]) and "top1" in pretraining["final_metrics"]
    tables = (out / "tables.md").read_text()
    assert f"| model | {' | '.join(SCHEMES['igbp_simple'])} | AA | OA |" in tables
    assert "| Supervised (1024) s2 |" in tables and "| MoCo partial fusion s1 |" in tables
    fused = out / "single" / "moco_partial_fusion_s1" / "f1" / "seed0"
    card = json.loads((fused / "export" / "card.json").read_text())
    assert list(card["encoders"]) == ["s1s2"] and card["adapters"] is True
    assert card["downstream"]["inputs"] == "fusion_only_s1" and card["encoders"]["s1s2"]["input_shape"][-1] == 12
    assert card["data"]["dataset"] == "sen12ms" and card["downstream"]["label_scheme"] == "igbp_simple"
    metrics = json.loads((fused / "metrics.json").read_text())
    assert metrics["split"] == "holdout" and list(metrics["support"]) == list(SCHEMES["igbp_simple"])
    baseline = json.loads((out / "single" / "supervised_1024_s2" / "f1" / "seed0" / "export" / "card.json")
                          .read_text())
    assert baseline["downstream"]["label_count"] == 1024 and baseline["downstream"]["pretrained"] is None


def test_the_moco_study_smoke_pre_trains_each_grid_point_and_fine_tunes_from_each(tmp_path):
    # Two points of its batch size x epochs grid (suite time), the MoCo row only: the protocol makes a pre-training
    # run per point and fine-tunes a row from each run.
    printed, out = smoke("protocol_moco_study", tmp_path / "study", 'grid=["train.batch_size=[32, 64]"]',
                         "models=[MoCo sensor-based s2]")
    assert printed.count("[pre-training ") == 2 and "smoke: pre-training" not in printed
    runs = sorted(p.name for p in (out / "pretraining" / "moco_sensor").iterdir())
    assert runs == ["batch_size_32", "batch_size_64"]
    results = json.loads((out / "results.json").read_text())
    assert [(r["model"], r["pretraining"]) for r in results] == [
        ("MoCo sensor-based s2 [batch_size 32]", {"train.batch_size": "32"}),
        ("MoCo sensor-based s2 [batch_size 64]", {"train.batch_size": "64"})]
    for point, result in zip(runs, results, strict=True):
        card = json.loads((out / "single" / f"moco_sensorbased_s2__{point}" / "f1" / "seed0" / "export" / "card.json")
                          .read_text())
        assert card["downstream"]["pretrained"] == str((out / "pretraining" / "moco_sensor" / point).resolve())
        assert f"| {result['model']} |" in (out / "tables.md").read_text()


def config_of(folder, label, model, fraction):
    """The resolved config of one run of a protocol's smoke (first seed)."""
    return yaml.safe_load((folder / label / model / f"f{fraction:g}" / "seed0" / "config.yaml").read_text())


def test_the_isprs_protocol_smoke_makes_its_pretrainings_on_the_fly(tmp_path):
    # Multi-label, at one label fraction, one system of each kind (a baseline, and one per pre-training) to stay
    # within the suite's time. Every pre-training is made on the fly (a named finished run instead: the quick-start
    # protocol's smoke, tests/evaluation/test_protocol.py).
    models = ["OnlySen-1", "SimCLR (RGB)", "MMA", "Dual-SimCLR frozen"]
    printed, out = smoke("protocol_isprs", tmp_path / "isprs", "labels=[multi]", "label_fractions=[0.1]",
                         f"models=[{', '.join(models)}]")
    for method in ("dual_simclr", "mma", "simclr"):
        assert f"smoke: pre-training {method}" in printed
    tables = (out / "tables.md").read_text()
    assert tables.startswith("**SYNTHETIC data**") and "per-class F1, F1, O-F1" in tables
    rows = [line.split(" | ")[0][2:] for line in tables.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:5] == models  # the per-class table, in the protocol's order
    results = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in results] == models and all(r["synthetic"] for r in results)
    assert all(list(r["scores"]) == ["F1", "O-F1"] for r in results)
    # Each pre-trained row took its encoders' architecture and input from its card.
    mma = config_of(out, "multi", "mma", 0.1)
    assert mma["model"]["backbone"] == "vgg" and mma["model"]["pretrained"].endswith("pretrained/mma")
    # SimCLR's run (configs/simclr_rgb.yaml) exported its RGB encoder with the bands and scaling it was trained on.
    card = json.loads((out / "pretrained" / "simclr" / "export" / "card.json").read_text())
    assert card["method"] == "simclr" and list(card["encoders"]) == ["s2"]
    assert (card["encoders"]["s2"]["input"]["bands"], card["encoders"]["s2"]["input"]["method"]) == \
        (["B04", "B03", "B02"], "fixed")
    encoder = keras.saving.load_model(out / "pretrained" / "simclr" / "export" / "encoder_s2.keras")
    assert encoder(np.zeros((1, 32, 32, 3), np.float32))["pooled"].shape == (1, 512)
    simclr = config_of(out, "multi", "simclr_rgb", 0.1)
    assert (simclr["model"]["inputs"], simclr["data"]["s2_bands"], simclr["data"]["normalization"]) == \
        ("only_s2", ["B04", "B03", "B02"], "fixed")
    baseline = config_of(out, "multi", "onlysen1", 0.1)
    assert baseline["model"]["backbone"] == "resnet10" and baseline["model"]["pretrained"] is None
    assert baseline["data"]["class_balance"] is True and baseline["data"]["source"] == "synthetic"
    # Frozen: the run's exported encoders are the pre-trained ones.
    for m in ("s1", "s2"):
        for a, b in zip(exported_weights(out / "pretrained" / "dual_simclr", m),
                        exported_weights(out / "multi" / "dualsimclr_frozen" / "f0.1" / "seed0", m), strict=True):
            np.testing.assert_array_equal(a, b)
