"""The shipped Swin configs as a user runs them, with the narrow test Swin at 32 px crops: train.py
Dual-Swin pre-training, train.py SwinUNet from its frozen S2 encoder, evaluate.py --run on it."""

import json

import numpy as np
import pytest

import sslrs_tf.models.swin  # noqa: F401  (registers the Swin layers that loading an exported encoder needs)
from tests.e2e.chains import evaluate, train
from tests.helpers import exported_weights, tensorboard_logs

pytestmark = pytest.mark.e2e


def test_dual_swin_then_swinunet_from_its_frozen_encoders_evaluates_to_per_class_iou(small_world, tmp_path):
    pre, seg = tmp_path / "dual_swin", tmp_path / "seg"
    short = [*small_world, "model.backbone=swin_micro", "data.crop_size=32", "train.epochs=1",
             "train.steps_per_epoch=1", "train.batch_size=8"]
    # Eight steps without warm-up (a Swin step's first trace costs 15-25 s here).
    train("dual_swin.yaml", pre, *short, "train.steps_per_epoch=8", "train.log_every=1", "optimizer.lr=1e-3",
          "optimizer.warmup_epochs=0", "data.validation_split=null")
    train("finetune_swin_segmentation.yaml", seg, *short, f"model.pretrained={pre}", "model.inputs=only_s2",
          "model.freeze=true")
    evaluated = evaluate(seg)
    losses = [float(v) for _, v in sorted(tensorboard_logs(pre / "tensorboard")["batch_loss"], key=lambda e: e[0])]
    assert len(losses) == 8 and losses[-1] < 0.8 * losses[0], losses  # the epoch's running mean vs the first batch
    card = json.loads((pre / "export" / "card.json").read_text())
    assert card["backbone"] == "swin_micro" and card["encoders"]["s1"]["input_shape"] == [None, 32, 32, 2]
    assert card["encoders"]["s2"]["output"]["P2"] == [None, 16, 16, 24]
    # Frozen: the pretrained S2 encoder.
    np.testing.assert_array_equal(exported_weights(pre, "s2")[0], exported_weights(seg, "s2")[0])
    printed = evaluated.stdout
    assert "segmentation-label" in printed and "mIoU" in printed and "| Forest |" in printed
    metrics = json.loads((seg / "metrics.json").read_text())
    assert list(metrics["scores"]) == ["OA", "AA", "mIoU"]
    present = [v for v in metrics["per_class"].values() if v["IoU"] is not None]
    assert present and all(set(v) == {"accuracy", "IoU"} for v in present)
    # The averages are over the classes present, computed from the same counts as the per-class values.
    assert metrics["scores"]["mIoU"] == pytest.approx(np.mean([v["IoU"] for v in present]), abs=0.01)
    assert metrics["scores"]["AA"] == pytest.approx(np.mean([v["accuracy"] for v in present]), abs=0.01)
    pixels = sum(metrics["support"].values())
    assert 0 < pixels <= 16 * 32 * 32  # the small world's 16 test patches, centre crops of 32 px (255 excluded)
