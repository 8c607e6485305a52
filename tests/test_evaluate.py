"""Downstream runs end to end: train.py from a pre-training run, then evaluate.py; one-line errors."""

import json
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from evaluate import main as evaluate_main
from sslrs_tf.errors import UserError
from tests.helpers import ROOT, eurosat_fake, exported_weights
from train import main as train_main

FINETUNE = str(ROOT / "configs" / "finetune_tiny.yaml")
EUROSAT = str(ROOT / "configs" / "finetune_eurosat.yaml")
BIGEARTHNET = str(ROOT / "configs" / "finetune_bigearthnet.yaml")


def test_pretrained_encoders_fed_differently_normalised_input_are_refused(pretrained_run, small_world, tmp_path,
                                                                         capsys):
    # On the command line: a contradiction of the card, refused naming both.
    assert train_main(["--config", FINETUNE, f"run.dir={tmp_path / 'x'}", f"model.pretrained={pretrained_run}",
                       "data.normalization=fixed", *small_world]) == 2
    line = capsys.readouterr().err
    assert line.startswith("error: data.normalization=fixed contradicts model.pretrained")
    assert "per_sample_max" in line and str(pretrained_run) in line and line.count("\n") == 1
    # Loaded by hand (no card step before): the encoders' own check refuses it.
    from sslrs_tf.models.pretrained import load_encoders

    with pytest.raises(UserError, match="the s1 encoder was trained on input prepared differently") as caught:
        load_encoders(pretrained_run, ("s1", "s2"), "fixed", {"s1": None, "s2": None})
    assert "per_sample_max" in str(caught.value) and "fixed" in str(caught.value)


def test_zscore_without_statistics_for_every_band_is_a_config_error(tmp_path, capsys):
    assert train_main(["--config", FINETUNE, f"run.dir={tmp_path / 'x'}", "data.normalization=zscore"]) == 2
    assert capsys.readouterr().err.startswith("error: config: data.normalization zscore with data.s2_bands")


@pytest.mark.parametrize("args, message", [
    (["model.freeze=true"], "error: config: model.freeze needs model.pretrained"),
    (["model.pretrained=/nonexistent/run"], "error: model.pretrained: no card.json in /nonexistent/run"),
    (["data.label=null"], "error: config: model.method classifier needs data.label single or multi"),
    (["model.inputs=early"], "error: config: model.inputs must be one of only_s1, only_s2, early_fusion, late_fusion"),
])
def test_downstream_config_errors_are_one_line(args, message, tmp_path, capsys, small_world):
    # In-process (the entry point's main): the subprocess path of the same errors is tested in test_train.py.
    assert train_main(["--config", FINETUNE, f"run.dir={tmp_path / 'x'}", *small_world, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_evaluate_refuses_what_it_cannot_evaluate(tmp_path, capsys, pretrained_run):
    assert evaluate_main(["--run", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: --run {tmp_path}: no config.yaml (not a run directory)\n"
    assert evaluate_main(["--run", str(tmp_path), "--split", "holdout"]) == 2  # still no run
    capsys.readouterr()


def test_a_pretraining_run_evaluates_to_cross_modal_retrieval(pretrained_run, tmp_path, capsys):
    run = tmp_path / "copy"
    shutil.copytree(pretrained_run, run)  # evaluation writes metrics.json into the run
    assert evaluate_main(["--run", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "cross-modal retrieval on holdout" in printed and "| s1->s2 |" in printed and "| mean |" in printed
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics["scores"]) == ["top1", "top5", "top10", "median_rank"]
    assert metrics["pairs"] > 10 and 1 <= metrics["scores"]["median_rank"] <= metrics["pairs"]
    assert 0 <= metrics["scores"]["top1"] <= metrics["scores"]["top5"] <= metrics["scores"]["top10"] <= 100
    assert evaluate_main(["--run", str(run), "--split", "nosuch"]) == 2
    assert capsys.readouterr().err.startswith("error: --split nosuch: ")


@pytest.mark.slow
def test_eurosat_fine_tunes_the_s2_encoder_then_evaluates(pretrained_run, tmp_path, capsys):
    out = tmp_path / "eurosat"
    with tfds.testing.mock_data(as_dataset_fn=eurosat_fake(n=12, noise=True)):
        assert train_main(["--config", EUROSAT, f"run.dir={out}", f"model.pretrained={pretrained_run}",
                           "model.backbone=resnet10", "train.epochs=1", "train.batch_size=4", "data.crop_size=32",
                           f"data.data_dir={tmp_path / 'tfds'}"]) == 0
        assert evaluate_main(["--run", str(out), "--batch-size", "5"]) == 0
    printed = capsys.readouterr().out
    assert "| AnnualCrop |" in printed and "| SeaLake |" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "eurosat" and metrics["split"] == "train[80%:]"
    assert sum(metrics["support"].values()) == 12 and len(metrics["per_class"]) == 10
    card = json.loads((out / "export" / "card.json").read_text())
    assert list(card["encoders"]) == ["s2"]  # only_s2: the S1 encoder of the pre-training run is not used
    changed = [not np.array_equal(a, b)
               for a, b in zip(exported_weights(out, "s2"), exported_weights(pretrained_run, "s2"), strict=True)]
    assert any(changed)  # fine-tuned, not frozen


def test_bigearthnet_refuses_a_13_band_encoder_unless_told_how_to_fill_b10(pretrained_run, tmp_path, capsys):
    with tfds.testing.mock_data(num_examples=4):
        assert train_main(["--config", BIGEARTHNET, f"run.dir={tmp_path / 'x'}", f"model.pretrained={pretrained_run}",
                           "model.backbone=resnet10", "data.missing_bands=error"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bigearthnet/all has no S2 band B10") and err.count("\n") == 1
    assert train_main(["--config", EUROSAT, f"run.dir={tmp_path / 'y'}", "data.source=synthetic",
                       "model.pretrained=null"]) == 2
    assert capsys.readouterr().err.startswith("error: config: data.source synthetic has sen12ms and dfc2020")
