"""``evaluate.py --protocol protocol_swin --smoke``: the CVPR segmentation protocol in miniature on a synthetic
world, its Dual-Swin pre-training made on the fly (configs/dual_swin.yaml), SwinUNet fine-tuned from it
(configs/finetune_swin_segmentation.yaml), the UNet, their ensemble and the qualitative figure, as a user
checks it before a long GPU job; then the CVPR classification protocol's smoke on that pre-training.

To stay within the suite's time: one label fraction, the ensemble's models only, the UNet alone in the figure
(the figure's panels, ensemble included: tests/evaluation/test_ensemble.py), one classification row (the
ISPRS and quick-start protocols' smokes are in tests/evaluation/test_protocol.py).
"""

import json
import sys

import numpy as np
import pytest
from tests.e2e.chains import run
from tests.helpers import ROOT, exported_weights

pytestmark = pytest.mark.e2e


def smoke(protocol, folder, *overrides):
    """Runs the smoke of a shipped protocol into ``folder_smoke``; returns the process and that folder."""
    done = run(sys.executable, ROOT / "evaluate.py", "--protocol", protocol, "--smoke", f"dir={folder}", *overrides,
               cwd=folder.parent)
    return done, folder.parent / f"{folder.name}_smoke"


def test_the_swin_protocols_smokes_write_the_ensemble_row_the_qualitative_figure_and_the_frozen_probe(tmp_path):
    models = "[UNet, SwinUNet fine-tuned, Ensemble UNet + SwinUNet fine-tuned]"
    done, out = smoke("protocol_swin", tmp_path / "swin", f"models={models}", "figure=[UNet]",
                      "label_fractions=[1.0]", "figure_patches=2")
    card = json.loads((out / "pretrained" / "dual_simclr" / "export" / "card.json").read_text())
    assert card["backbone"] == "swin_micro" and card["encoders"]["s1"]["input_shape"] == [None, 32, 32, 2]
    ensemble = json.loads((out / "segmentation" / "ensemble_unet__swinunet_finetuned" / "f1" / "seed0" /
                           "metrics.json").read_text())
    assert [m.split("/")[-3] for m in ensemble["members"]] == ["unet", "swinunet_finetuned"]
    assert list(ensemble["scores"]) == ["OA", "AA", "mIoU"]
    assert "| Ensemble UNet + SwinUNet fine-tuned |" in (out / "tables.md").read_text()
    assert (out / "qualitative.png").stat().st_size > 10_000
    assert "qualitative.png" in done.stdout
    # The fine-tuned SwinUNet's metrics: averages over the classes present, from the same counts.
    metrics = json.loads((out / "segmentation" / "swinunet_finetuned" / "f1" / "seed0" / "metrics.json").read_text())
    present = [v for v in metrics["per_class"].values() if v["IoU"] is not None]
    assert present and all(set(v) == {"accuracy", "IoU"} for v in present)
    assert metrics["scores"]["mIoU"] == pytest.approx(np.mean([v["IoU"] for v in present]), abs=0.01)
    assert metrics["scores"]["AA"] == pytest.approx(np.mean([v["accuracy"] for v in present]), abs=0.01)
    assert 0 < sum(metrics["support"].values()) <= 16 * 32 * 32  # the smoke world's 16 test patches of 32 px

    # The classification protocol's smoke on that Dual-Swin run (named: not pre-trained again), multi-label.
    pretrained = out / "pretrained" / "dual_simclr"
    done, out = smoke("protocol_swin_classification", tmp_path / "swin_cls", f"pretrained.dual_simclr={pretrained}",
                      "models=[Dual-Swin frozen]", "labels=[multi]", "label_fractions=[1.0]")
    assert "smoke: pre-training" not in done.stdout and "| Dual-Swin frozen |" in (out / "tables.md").read_text()
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

    done, out = smoke("protocol_moco", tmp_path / "moco", "models=[Supervised (1024) s2, MoCo partial fusion s1]",
                      "labels=[single]")
    assert "smoke: pre-training moco_partial_fusion (moco_partial_fusion.yaml" in done.stdout
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
    done, out = smoke("protocol_moco_study", tmp_path / "study", 'grid=["train.batch_size=[32, 64]"]',
                      "models=[MoCo sensor-based s2]")
    assert done.stdout.count("[pre-training ") == 2 and "smoke: pre-training" not in done.stdout
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
