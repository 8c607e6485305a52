"""Each pre-training method's shipped config through train.py (and evaluate.py), as real processes.

Briefly (tests/helpers.py SHORT_RUN: one epoch of two steps, batch 8, 32 px crops) on the small
synthetic world; what each method learns is shown by the in-process tests of tests/methods/.
"""

import json

import keras
import numpy as np
import pytest

from tests.e2e.chains import evaluate, train
from tests.helpers import SHORT_RUN, card_of

pytestmark = pytest.mark.e2e


def test_train_py_runs_mma_and_exports_vgg_encoders_with_their_card(small_world, tmp_path):
    out = tmp_path / "run"
    train("mma.yaml", out, *small_world, *SHORT_RUN, "model.embedding_dim=32", "train.validation_steps=1")
    card = card_of(out)
    assert card["method"] == "mma" and card["backbone"] == "vgg"
    assert card["encoders"]["s1"]["output"] == {"features": [None, None, None, 32], "pooled": [None, 32]}
    s2 = keras.saving.load_model(out / "export" / card["encoders"]["s2"]["file"])
    assert s2(np.zeros((1, 32, 32, 13), np.float32))["features"].shape == (1, 4, 4, 32)
    assert "val_top1" in card["final_metrics"]


def test_train_py_runs_moco_sensor_then_evaluates_query_to_key_retrieval(small_world, tmp_path):
    out = tmp_path / "run"
    train("moco_sensor.yaml", out, *small_world, *SHORT_RUN, "model.backbone=resnet10", "model.queue_size=64",
          "train.validation_steps=1")
    evaluated = evaluate(out)
    card = card_of(out)
    assert card["method"] == "moco_sensor" and set(card["encoders"]) == {"s1", "s2"}
    s2 = card["encoders"]["s2"]
    assert s2["input_shape"] == [None, None, None, 10] and len(s2["input"]["bands"]) == 10
    assert s2["input"]["method"] == "zscore" and "B10" not in s2["input"]["bands"]
    # The exported S2 encoder is the query encoder with its adapter: 10 bands in, the pooled vector out.
    encoder = keras.saving.load_model(out / "export" / s2["file"])
    assert encoder(np.zeros((1, 32, 32, 10), np.float32))["pooled"].shape == (1, 512)
    assert "cross-modal retrieval on holdout" in evaluated.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pairs"] > 10 and 1 <= metrics["scores"]["median_rank"] <= metrics["pairs"]


def test_train_py_runs_simclr_on_rgb_and_exports_its_encoder(small_world, tmp_path):
    out = tmp_path / "run"
    train("simclr_rgb.yaml", out, *small_world, *SHORT_RUN, "model.backbone=resnet10", "data.validation_split=null")
    card = card_of(out)
    assert list(card["encoders"]) == ["s2"] and card["method"] == "simclr"
    assert card["encoders"]["s2"]["input"]["bands"] == ["B04", "B03", "B02"]
    assert card["encoders"]["s2"]["input"]["method"] == "fixed"
    encoder = keras.saving.load_model(out / "export" / "encoder_s2.keras")
    assert encoder(np.zeros((1, 32, 32, 3), np.float32))["pooled"].shape == (1, 512)
