"""Your own chips end to end, as docs/own_data.md tells a user: a manifest of chips (geographic CRS), built with
``python -m sslrs_tf.datasets paired_chips``, pre-trained on with train.py, fine-tuned on with its labels,
evaluated with evaluate.py, and compared in a protocol whose base config names the dataset.

Briefly (2-step epochs, 32 px crops of 64 px chips): the mains run in this process (tests/e2e/chains.py)."""

import json

import pytest
import yaml

from sslrs_tf.data import synthetic
from tests.e2e.chains import evaluate, main_output, train

pytestmark = pytest.mark.e2e

CLASSES = ["land", "urban", "water"]


def test_a_manifest_of_chips_is_pre_trained_on_fine_tuned_on_evaluated_and_compared(tmp_path):
    from sslrs_tf.datasets import main as build_main

    synthetic.generate_chips(tmp_path / "chips", 24, 64, seed=1, task="classification", crs="geographic")
    config = json.dumps({"name": "mine", "classes": CLASSES, "patch_size": 64})
    printed = main_output(build_main, "paired_chips", "--manual_dir", tmp_path / "chips", "--data_dir",
                          tmp_path / "tfds", "--config", config)
    assert "paired_chips/mine/1.0.0 ready in" in printed and "train 21" in printed and "test 3" in printed

    data = ["data.source=tfds", "data.dataset=paired_chips", "data.config=mine", f"data.data_dir={tmp_path / 'tfds'}"]
    train("tiny.yaml", tmp_path / "pre", *data, "data.validation_split=test", "train.steps_per_epoch=2",
          "train.epochs=1")
    train("finetune_tiny.yaml", tmp_path / "ft", *data, "data.split=train", "train.epochs=1",
          f"model.pretrained={tmp_path / 'pre'}")
    printed = evaluate("--run", tmp_path / "ft")
    assert all(f"| {name} |" in printed for name in CLASSES)  # the per-class table, by the dataset's names
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert list(metrics["per_class"]) == CLASSES and metrics["split"] == "test"

    protocol = {"dir": str(tmp_path / "protocol"), "base": "finetune_tiny.yaml",
                "pretrained": {"dual_simclr": str(tmp_path / "pre")}, "models": ["Dual-SimCLR frozen", "LateFusion"],
                "labels": ["single"], "label_fractions": [0.5], "seeds": [0],
                "overrides": [*data, "data.split=train", "train.epochs=1"]}
    (tmp_path / "protocol.yaml").write_text(yaml.safe_dump(protocol))
    evaluate("--protocol", tmp_path / "protocol.yaml")
    tables = (tmp_path / "protocol" / "tables.md").read_text()
    assert "| Dual-SimCLR frozen |" in tables and "| LateFusion |" in tables


def test_ssl4eo_s12_in_its_layout_is_built_and_pre_trained_on_with_seasons_as_pairs(tmp_path):
    from sslrs_tf.datasets import main as build_main

    synthetic.generate_ssl4eo(tmp_path / "SSL4EO-S12", 12, 48)
    config = json.dumps({"name": "tiny", "patch_size": 48, "holdout_fraction": 0.2})
    printed = main_output(build_main, "ssl4eo_s12", "--manual_dir", tmp_path / "SSL4EO-S12", "--data_dir",
                          tmp_path / "tfds", "--config", config)
    assert "ssl4eo_s12/tiny/1.0.0 ready in" in printed
    train("tiny.yaml", tmp_path / "pre", "data.source=tfds", "data.dataset=ssl4eo_s12", "data.config=tiny",
          f"data.data_dir={tmp_path / 'tfds'}", "data.season_pairs=any", "train.steps_per_epoch=1", "train.epochs=1")
    card = json.loads((tmp_path / "pre" / "export" / "card.json").read_text())
    assert card["method"] == "dual_simclr" and card["encoders"]["s2"]["input_shape"][-1] == 13
