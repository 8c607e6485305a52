"""Each pre-training method's shipped config through train.py (and evaluate.py), and its export probed downstream
with the shipped downstream configs (``model.pretrained=RUN``: the card sets backbone, bands, normalisation and
inputs). Dual-SimCLR, MMA and SimCLR (RGB, pre-trained there only) go downstream in the ISPRS protocol's smoke,
Dual-Swin in the Swin protocol's (test_smoke.py).

Briefly (tests/helpers.py SHORT_RUN: one epoch of two steps, batch 8, 32 px crops) on the small
synthetic world; what each method learns is shown by the tests of tests/methods/. The entry points' mains run
in this process (tests/e2e/chains.py), here beside the main test run (suite time).
"""

import json
import re

import keras
import numpy as np
import pytest

from tests.e2e.chains import evaluate, train
from tests.helpers import SHORT_RUN, card_of, exported_weights

pytestmark = pytest.mark.e2e


def downstream(config, pre, out, world, *overrides):
    """``train.py --config CONFIG model.pretrained=PRE`` with frozen encoders: the printed card line and the run's
    resolved config (the protocols' smokes and tests/test_evaluate.py evaluate such runs)."""
    import yaml

    printed = train(config, out, *world, "train.epochs=1", "train.batch_size=8", f"model.pretrained={pre}",
                    "model.freeze=true", *overrides)
    line = next(x for x in printed.splitlines() if x.startswith("model.pretrained"))
    return line, yaml.safe_load((out / "config.yaml").read_text())


def test_train_py_runs_mma_and_exports_vgg_encoders_with_their_card(small_world, tmp_path):
    out = tmp_path / "run"
    train("mma.yaml", out, *small_world, *SHORT_RUN, "model.embedding_dim=32", "train.validation_steps=1")
    card = card_of(out)
    assert card["method"] == "mma" and card["backbone"] == "vgg"
    assert card["encoders"]["s1"]["output"] == {"P0": [None, None, None, 64], "P1": [None, None, None, 128],
                                                "P2": [None, None, None, 256], "P3": [None, None, None, 32],
                                                "pooled": [None, 32]}
    s2 = keras.saving.load_model(out / "export" / card["encoders"]["s2"]["file"])
    assert s2(np.zeros((1, 32, 32, 13), np.float32))["P3"].shape == (1, 4, 4, 32)
    assert "val_top1" in card["final_metrics"]
    # Downstream, its maps for the segmentation decoder (pooled for classification: tests/evaluation,
    # the ISPRS protocol's smoke).
    line, config = downstream("finetune_segmentation.yaml", out, tmp_path / "seg", small_world,
                                       "data.crop_size=32")
    assert "model.backbone=vgg, model.embedding_dim=32" in line
    assert (config["model"]["backbone"], config["model"]["embedding_dim"]) == ("vgg", 32)
    for m in ("s1", "s2"):
        for a, b in zip(exported_weights(out, m), exported_weights(tmp_path / "seg", m), strict=True):
            np.testing.assert_array_equal(a, b)


def test_train_py_runs_moco_sensor_then_evaluates_query_to_key_retrieval(small_world, tmp_path):
    out = tmp_path / "run"
    train("moco_sensor.yaml", out, *small_world, *SHORT_RUN, "model.backbone=resnet10", "model.queue_size=64",
          "train.validation_steps=1")
    evaluated = evaluate("--run", out)
    card = card_of(out)
    assert card["method"] == "moco_sensor" and set(card["encoders"]) == {"s1", "s2"}
    s2 = card["encoders"]["s2"]
    assert s2["input_shape"] == [None, None, None, 10] and len(s2["input"]["bands"]) == 10
    assert s2["input"]["method"] == "zscore" and "B10" not in s2["input"]["bands"]
    # The exported S2 encoder is the query encoder with its adapter: 10 bands in, the pooled vector out.
    encoder = keras.saving.load_model(out / "export" / s2["file"])
    assert encoder(np.zeros((1, 32, 32, 10), np.float32))["pooled"].shape == (1, 512)
    assert "cross-modal retrieval on holdout" in evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pairs"] > 10 and 1 <= metrics["scores"]["median_rank"] <= metrics["pairs"]
    # OnlySen-1 from the S1 key encoder, with its adapter; z-score and the 10 bands from the card.
    line, config = downstream("finetune_classification.yaml", out, tmp_path / "cls", small_world,
                                 "data.crop_size=32", "model.inputs=only_s1")
    assert "model.adapters=true, data.normalization=zscore" in line
    assert config["data"]["normalization"] == "zscore" and config["model"]["inputs"] == "only_s1"
    assert card_of(tmp_path / "cls")["downstream"]["inputs"] == "only_s1"
    for a, b in zip(exported_weights(out, "s1"), exported_weights(tmp_path / "cls", "s1"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_train_py_runs_moco_fusion_and_its_stacked_encoder_starts_early_fusion_segmentation(small_world, tmp_path):
    out = tmp_path / "run"
    train("moco_fusion.yaml", out, *small_world, *SHORT_RUN, "model.backbone=resnet10", "model.queue_size=64")
    assert list(card_of(out)["encoders"]) == ["s1s2"]
    line, config = downstream("finetune_segmentation.yaml", out, tmp_path / "seg", small_world,
                                       "data.crop_size=32")
    assert "model.inputs=early_fusion" in line and config["model"]["inputs"] == "early_fusion"
    assert len(config["data"]["s2_bands"]) == 10
    for a, b in zip(exported_weights(out, "s1s2"), exported_weights(tmp_path / "seg", "s1s2"), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("config, encoders, channels", [
    ("moco_single.yaml", {"s2"}, 10),
    ("moco_sensor_augmented.yaml", {"s1", "s2"}, 10),
])
def test_train_py_runs_each_moco_scenario_and_exports_its_encoders(config, encoders, channels, tmp_path, small_world):
    # The SEN12MS MoCo work's scenarios beyond the sensor pairs and all fusion (above, and taken downstream),
    # briefly (SHORT_RUN); partial fusion is pre-trained by the MoCo protocol's smoke (test_smoke.py).
    out = tmp_path / "run"
    train(config, out, *small_world, *SHORT_RUN, "model.backbone=resnet10", "model.queue_size=32")
    card = json.loads((out / "export" / "card.json").read_text())
    assert set(card["encoders"]) == encoders and card["adapters"] is True
    first = sorted(encoders)[-1]
    assert card["encoders"][first]["input_shape"][-1] == channels
    assert np.isfinite(card["final_metrics"]["loss"]) and "top1" in card["final_metrics"]


def test_sen12ms_scene_classification_trains_on_a_label_count_and_reports_the_scheme_s_classes(tmp_path, small_world):
    from sslrs_tf.data.labels import SCHEMES

    out = tmp_path / "scenes"
    printed = train("finetune_sen12ms_scenes.yaml", out, *small_world, "train.epochs=1", "train.batch_size=4",
                    "data.crop_size=32", "model.backbone=resnet10", "model.pretrained=null", "data.label_count=12")
    card = json.loads((out / "export" / "card.json").read_text())
    assert card["downstream"]["label_count"] == 12 and card["downstream"]["label_scheme"] == "igbp_simple"
    steps = re.findall(r"\x1b\[1m(\d+)/(\d+)\x1b\[0m", printed)  # Keras' progress bar: bold "step/steps"
    assert steps and {total for _, total in steps} == {"3"}  # 12 labelled patches in batches of 4: three steps
    evaluate("--run", out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "holdout" and list(metrics["support"]) == list(SCHEMES["igbp_simple"])
    assert metrics["label_scheme"] == "igbp_simple" and sum(metrics["support"].values()) > 0
