"""Ensembles of downstream runs against a NumPy average of their probabilities; the qualitative figure."""

import json

import numpy as np
import pytest

from evaluate import main as evaluate_main
from sslrs_tf.errors import UserError
from tests.helpers import ROOT

FINETUNE = ROOT / "configs" / "finetune_tiny.yaml"
SEGMENTATION = ["model.method=segmenter", "data.label=segmentation", "train.epochs=1", "train.steps_per_epoch=2",
                "optimizer.encoder_lr=null"]


@pytest.fixture(scope="module")
def segmenters(small_world, tmp_path_factory):
    """Two tiny segmentation runs that prepare their input differently: the UNet on S1+S2 stacked, and a
    ResNet-10 decoder on S2 RGB scaled to [0, 1]."""
    from train import main as train_main

    root = tmp_path_factory.mktemp("ensemble")
    runs = {"unet": ["model.backbone=unet", "model.inputs=early_fusion"],
            "resnet": ["model.inputs=only_s2", "data.s2_bands=rgb", "data.normalization=fixed"]}
    for name, overrides in runs.items():
        assert train_main(["--config", str(FINETUNE), f"run.dir={root / name}", *small_world, *SEGMENTATION,
                           *overrides]) == 0
    return root / "unet", root / "resnet"


def numpy_softmax(logits):
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def test_the_ensemble_scores_the_numpy_average_of_its_members_probabilities(segmenters, tmp_path, capsys):
    from sslrs_tf.evaluation.evaluate import _rebuild
    from sslrs_tf.training.rundir import RunDir
    from sslrs_tf.config import load_config

    # Each member's logits through its own pipeline, as evaluate.py --run reads it.
    logits, targets = [], None
    for run in segmenters:
        config = load_config(run / "config.yaml")
        _, ds, model = _rebuild(RunDir(run), config, "test", 8)
        pairs = [(model(x, training=False).numpy(), y.numpy()) for x, y in ds]
        logits.append(np.concatenate([p for p, _ in pairs]))
        targets = np.concatenate([y for _, y in pairs])
    predicted = np.argmax((numpy_softmax(logits[0]) + numpy_softmax(logits[1])) / 2, axis=-1)
    valid = targets != 255
    confusion = np.zeros((8, 8))
    np.add.at(confusion, (targets[valid].astype(int), predicted[valid]), 1)
    present = confusion.sum(1) > 0
    oa = np.trace(confusion) / confusion.sum()
    aa = np.mean(np.diag(confusion)[present] / confusion.sum(1)[present])
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    miou = np.mean(np.diag(confusion)[present] / union[present])

    out = tmp_path / "ensemble"
    assert evaluate_main(["--ensemble", *map(str, segmenters), "--out", str(out), "--batch-size", "8"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scores"] == pytest.approx({"OA": 100 * oa, "AA": 100 * aa, "mIoU": 100 * miou}, abs=0.006)
    assert metrics["members"] == [str(r) for r in segmenters] and metrics["synthetic"] is True
    assert sum(metrics["support"].values()) == valid.sum()
    # Not simply one member's scores: the members disagree on this data.
    alone = np.argmax(logits[0], -1)[valid]
    assert not np.array_equal(alone, predicted[valid])
    assert "ensemble of" in capsys.readouterr().out


def test_the_figure_has_a_row_per_patch_and_a_panel_per_model_with_a_class_legend(segmenters, tmp_path):
    from sslrs_tf.data.labels import CLASS_NAMES
    from sslrs_tf.evaluation.ensemble import qualitative

    unet, resnet = map(str, segmenters)
    fig = qualitative({"UNet": [unet], "ResNet": [resnet], "ensemble": [unet, resnet]}, tmp_path / "q.png",
                      patches=3)
    assert (tmp_path / "q.png").stat().st_size > 10_000
    assert len(fig.axes) == 3 * 5  # three rows: true colour, ground truth, UNet, ResNet, ensemble
    assert [ax.get_title() for ax in fig.axes[:5]] == ["Sentinel-2 true colour", "ground truth", "UNet", "ResNet",
                                                        "ensemble"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(CLASS_NAMES)
    # Each prediction panel shows a [32, 32] class map; the true-colour panel an RGB image.
    images = [ax.get_images()[0].get_array() for ax in fig.axes[:5]]
    assert images[0].shape == (32, 32, 3) and all(im.shape == (32, 32) for im in images[1:])
    assert "SYNTHETIC" in fig._suptitle.get_text()


def test_draw_figure_colours_each_class_and_leaves_unlabelled_pixels_white():
    from matplotlib import colors

    from sslrs_tf.evaluation.ensemble import CLASS_COLOURS, draw_figure

    truth = np.array([[[0, 7], [255, 3]]], np.uint8)
    fig = draw_figure(np.zeros((1, 2, 2, 3)), truth, {"model": truth}, ["c"] * 8)
    image = fig.axes[1].get_images()[0]
    rgba = image.to_rgba(image.get_array())
    assert colors.to_hex(rgba[0, 0]) == CLASS_COLOURS[0] and colors.to_hex(rgba[0, 1]) == CLASS_COLOURS[7]
    assert colors.to_hex(rgba[1, 1]) == CLASS_COLOURS[3] and colors.to_hex(rgba[1, 0]) == "#ffffff"


def test_ensemble_errors_are_one_line(segmenters, pretrained_run, tmp_path, capsys):
    from sslrs_tf.evaluation.ensemble import evaluate_ensemble

    with pytest.raises(UserError, match="--ensemble needs two or more runs; received 1"):
        evaluate_ensemble([segmenters[0]])
    with pytest.raises(UserError, match="a pre-training run; an ensemble averages downstream predictions"):
        evaluate_ensemble([segmenters[0], pretrained_run])
    assert evaluate_main(["--ensemble", str(segmenters[0]), str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no config.yaml (not a run directory)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_main(["--ensemble", str(segmenters[0]), str(segmenters[1]), "--figure", "2"])  # no --out
    assert "--figure N takes N >= 1, with --run, or with --ensemble and --out" in capsys.readouterr().err
