"""train.py end to end: a tiny run, exact resume after kill -9, the non-finite stop, one-line config errors."""

import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.helpers import ROOT, exported_weights, tensorboard_logs
from train import main as train_main

TINY = str(ROOT / "configs" / "tiny.yaml")


def train_cmd(run_dir, world, *extra):
    return [sys.executable, str(ROOT / "train.py"), "--config", TINY, f"run.dir={run_dir}", *world, *extra]


@pytest.mark.slow
def test_tiny_run_writes_config_logs_checkpoints_and_exported_encoders(pretrained_run, small_world, capsys):
    out = pretrained_run
    assert (out / "config.yaml").exists() and list((out / "checkpoints").glob("ckpt-*.index"))
    card = json.loads((out / "export" / "card.json").read_text())
    assert card["method"] == "dual_simclr" and card["backbone"] == "resnet10"
    assert card["encoders"]["s2"]["input"]["bands"][3] == "B04" and card["encoders"]["s1"]["input"]["clip"] == [-25.0, 0.0]
    assert card["encoders"]["s1"]["input"]["method"] == "per_sample_max" and card["data"]["synthetic"] is True
    assert {"loss", "top1", "top5", "spread", "val_loss"} <= set(card["final_metrics"])
    assert card["training"]["jit_compile"] is False  # train.jit_compile null on a CPU
    encoder = keras.saving.load_model(out / "export" / "encoder_s2.keras")
    assert encoder(np.zeros((1, 32, 32, 13), np.float32))["pooled"].shape == (1, 512)
    tags = set(tensorboard_logs(out / "tensorboard"))
    assert {"batch_loss", "batch_top1", "batch_spread", "batch_learning_rate"} <= tags, tags
    assert {"s2_rgb", "s1_vv"} <= tags, tags
    # The same command again (in-process: cheaper) finds the run finished and does not train further.
    assert train_main(train_cmd(out, small_world)[2:]) == 0
    printed = capsys.readouterr().out
    assert "Epoch" not in printed and f"resuming from {out / 'checkpoints' / 'ckpt-6'}: all epochs done" in printed


@pytest.mark.slow
def test_a_loss_that_stays_non_finite_stops_the_run_with_a_message(tmp_path, small_world, capsys):
    # In-process (the entry point's main, whose return value is the exit status): cheaper than a subprocess.
    code = train_main(train_cmd(tmp_path / "run", small_world, "optimizer.lr=1e30", "train.max_skipped=2",
                                "train.steps_per_epoch=5", "train.epochs=1", "data.validation_split=null")[2:])
    err = capsys.readouterr().err
    assert code == 1, err[-3000:]
    line = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(line) == 1 and "non-finite loss" in line[0] and "Traceback" not in err


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown key train.epoch; did you mean train.epochs?"),
        ("train.batch_size=big", "train.batch_size must be an integer"),
        ("optimizer.lr=-1", "optimizer.lr must be > 0.0"),
        ("data.crop_size=4096", "data.crop_size 4096 is larger than the synthetic world's 48 px patches"),
        ("model.backbone=vgg19", "model.backbone must be one of"),
        ("model.backbone=vgg", "model.method dual_simclr is built with model.backbone resnet10 or"),
        ("model.backbone=swin_t", "data.crop_size 32 does not fit model.backbone swin_t"),
        ("model.method=byol", "model.method must be one of dual_simclr"),
        ("train.distribution=multi_worker", "multi_worker needs TF_CONFIG (JSON with cluster and task)"),
    ],
)
def test_bad_configs_are_one_line_errors_with_exit_2(tmp_path, small_world, override, message, capsys):
    code = train_main(["--config", TINY, f"run.dir={tmp_path / 'r'}", *small_world, override])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_a_config_error_is_one_line_and_exit_2_from_a_real_process_before_tensorflow_loads(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", TINY, f"run.dir={tmp_path / 'r'}",
                             "train.epoch=3"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    # Nothing else on stderr: no traceback, and no TensorFlow start-up lines (it was not loaded).
    assert result.stderr.splitlines() == ["error: config: unknown key train.epoch; did you mean train.epochs?"]


def test_missing_data_directory_says_how_to_build_it(tmp_path, capsys):
    code = train_main(["--config", TINY, f"run.dir={tmp_path / 'r'}", "data.source=tfds",
                       f"data.data_dir={tmp_path / 'nothing'}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert "is not built in" in err and "tfds build tfds_builders/sen12ms" in err


def test_a_run_dir_with_another_config_is_refused(tmp_path, small_world, capsys):
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r" / "config.yaml").write_text("run: {dir: elsewhere}\n")
    (tmp_path / "r" / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    code = train_main(["--config", TINY, f"run.dir={tmp_path / 'r'}", *small_world])
    assert code == 2 and "holds a run with a different config" in capsys.readouterr().err


@pytest.mark.slow
def test_a_damaged_latest_checkpoint_is_passed_over_and_the_run_ends_as_it_did(pretrained_run, small_world,
                                                                                 tmp_path, capsys):
    run = shutil.copytree(pretrained_run, tmp_path / "run")
    finished = exported_weights(run, "s1", "s2")
    data = next((run / "checkpoints").glob("ckpt-6.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # the last checkpoint, cut short on disk
    assert train_main(train_cmd(run, small_world)[2:]) == 0
    printed = capsys.readouterr().out
    assert f"checkpoint {run / 'checkpoints' / 'ckpt-6'} cannot be read (" in printed
    assert ": passed over for the one before it" in printed
    assert f"resuming from {run / 'checkpoints' / 'ckpt-4'}: epoch 2 of 2, batch 2 of 3" in printed
    for a, b in zip(finished, exported_weights(run, "s1", "s2"), strict=True):
        np.testing.assert_array_equal(a, b)  # the two batches trained again, as the first time


def edit_card(card):
    """Hand edits of a pre-training card, each with the start of the line train.py answers with (after
    "error: model.pretrained: <card>: ")."""
    s2 = card["encoders"]["s2"]
    bands = s2["input"]["bands"]
    return {
        "band_renamed": (lambda: bands.__setitem__(0, "B1"),
                         "`encoders.s2.input.bands` must be a list of s2 bands (B01, B02, "),
        "band_removed": (lambda: bands.pop(), "`encoders.s2.input_shape` must be [..., 12] (the 12 bands of its "
                                              "input). Received: [None, None, None, 13]"),
        "method_misspelt": (lambda: s2["input"].__setitem__("method", "per-sample-max"),
                            "`encoders.s2.input.method` must be one of per_sample_max, per_patch_max, zscore, "
                            "fixed. Received: 'per-sample-max'"),
        "backbone_removed": (lambda: card.pop("backbone"), "`backbone` must be one of resnet10, "),
        "encoder_renamed": (lambda: card["encoders"].__setitem__("sentinel2", card["encoders"].pop("s2")),
                            "`encoders.sentinel2` must be named after the sensors it reads (s1, s2, s1s2). "
                            "Received: 'sentinel2'"),
    }


@pytest.mark.parametrize("edit", ["band_renamed", "band_removed", "method_misspelt", "backbone_removed",
                                  "encoder_renamed", "not_json"])
def test_a_hand_edited_card_is_one_line_naming_the_entry(pretrained_run, tmp_path, small_world, edit, capsys):
    pre = shutil.copytree(pretrained_run / "export", tmp_path / "export")
    path = pre / "card.json"
    if edit == "not_json":
        path.write_text(path.read_text()[:-10])
        expected = f"error: model.pretrained: {path} is not valid JSON ("
    else:
        card = json.loads(path.read_text())
        change, message = edit_card(card)[edit]
        change()
        path.write_text(json.dumps(card))
        expected = f"error: model.pretrained: {path}: {message}"
    code = train_main(["--config", str(ROOT / "configs" / "finetune_tiny.yaml"), f"run.dir={tmp_path / 'run'}",
                       *small_world, f"model.pretrained={pre}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(expected) and err.count("\n") == 1, err

