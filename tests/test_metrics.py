"""Streaming land-cover metrics against scikit-learn on random data: eager, in tf.function, distributed."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as skm

from sslrs_tf.evaluation.reports import report
from sslrs_tf.metrics import ConfusionMatrix, MultiLabelCounts

C = 8
NAMES = [f"c{i}" for i in range(C)]


def single_label_data(n=300, absent=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice([c for c in range(C) if c != absent], size=n)
    logits = rng.normal(size=(n, C)).astype(np.float32)
    logits[np.arange(n), y] += rng.uniform(0, 2.5, size=n)  # better than chance, not perfect
    return y, logits


def stream(metric, y, pred, sizes=(7, 64, 1, 100)):
    """Feeds `metric` in batches of uneven sizes."""
    start, i = 0, 0
    while start < len(y):
        stop = start + sizes[i % len(sizes)]
        metric.update_state(y[start:stop], pred[start:stop])
        start, i = stop, i + 1
    return np.asarray(metric.result())


def test_single_label_scores_match_sklearn_and_skip_the_absent_class():
    y, logits = single_label_data()
    p = logits.argmax(1)
    matrix = stream(ConfusionMatrix(C), y, logits)
    np.testing.assert_array_equal(matrix, skm.confusion_matrix(y, p, labels=range(C)))

    r = report(matrix, "single", NAMES)
    present = sorted(set(y))
    assert 5 not in present
    s = r["scores"]
    assert s["OA"] == pytest.approx(100 * skm.accuracy_score(y, p), abs=0.01)
    assert s["AA"] == pytest.approx(100 * skm.recall_score(y, p, labels=present, average="macro"), abs=0.01)
    assert s["F1"] == pytest.approx(100 * skm.f1_score(y, p, labels=present, average="macro"), abs=0.01)
    assert s["O-F1"] == pytest.approx(100 * skm.f1_score(y, p, average="micro"), abs=0.01)
    recall = skm.recall_score(y, p, labels=present, average=None)
    precision = skm.precision_score(y, p, labels=present, average=None, zero_division=0)
    for c, rc, pc in zip(present, recall, precision, strict=True):
        assert r["per_class"][f"c{c}"]["accuracy"] == pytest.approx(100 * rc, abs=0.01)
        assert r["per_class"][f"c{c}"]["precision"] == pytest.approx(100 * pc, abs=0.01)
    assert r["per_class"]["c5"] == {"accuracy": None, "precision": None, "recall": None, "F1": None}
    assert r["support"]["c5"] == 0 and sum(r["support"].values()) == len(y)


def test_scalar_scores_equal_the_report_and_batches_do_not_matter():
    y, logits = single_label_data(seed=1)
    full = report(stream(ConfusionMatrix(C), y, logits, sizes=(len(y),)), "single", NAMES)["scores"]
    for score in ("OA", "AA", "F1"):
        value = float(stream(ConfusionMatrix(C, score), y, logits, sizes=(3, 50)))
        assert 100 * value == pytest.approx(full[score], abs=0.01)


def test_segmentation_ignores_255_and_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.choice([0, 1, 2, 4, 6, 7], size=(6, 16, 16))
    y[:, :3] = 255  # unlabelled rows
    logits = rng.normal(size=(6, 16, 16, C)).astype(np.float32)
    logits += 2.0 * np.eye(C, dtype=np.float32)[np.minimum(y, C - 1)] * (rng.random(y.shape) < 0.6)[..., None]
    matrix = stream(ConfusionMatrix(C), y, logits, sizes=(1, 2, 3))
    valid = y != 255
    yt, yp = y[valid], logits.argmax(-1)[valid]
    assert matrix.sum() == valid.sum()  # no phantom class for ignored pixels
    r = report(matrix, "segmentation", NAMES)
    present = sorted(set(yt))
    iou = skm.jaccard_score(yt, yp, labels=present, average=None)
    assert r["scores"]["mIoU"] == pytest.approx(100 * iou.mean(), abs=0.01)
    assert r["scores"]["AA"] == pytest.approx(100 * skm.recall_score(yt, yp, labels=present, average="macro"), abs=0.01)
    assert r["scores"]["OA"] == pytest.approx(100 * skm.accuracy_score(yt, yp), abs=0.01)
    for c, value in zip(present, iou, strict=True):
        assert r["per_class"][f"c{c}"]["IoU"] == pytest.approx(100 * value, abs=0.01)
    assert r["per_class"]["c3"]["IoU"] is None and not np.isnan(r["scores"]["mIoU"])


def test_multilabel_scores_match_sklearn():
    rng = np.random.default_rng(3)
    y = (rng.random((200, C)) < 0.3).astype(np.float32)
    y[:, 4] = 0  # a class with no positive target
    logits = rng.normal(size=(200, C)).astype(np.float32) + 2.0 * (y - 0.5) * (rng.random((200, C)) < 0.7)
    pred = (1 / (1 + np.exp(-logits)) > 0.5).astype(int)
    counts = stream(MultiLabelCounts(C), y, logits)
    r = report(counts, "multi", NAMES)
    present = [c for c in range(C) if y[:, c].any()]
    assert r["scores"]["F1"] == pytest.approx(100 * skm.f1_score(y, pred, labels=present, average="macro"), abs=0.01)
    assert r["scores"]["O-F1"] == pytest.approx(100 * skm.f1_score(y, pred, average="micro"), abs=0.01)
    f1 = skm.f1_score(y, pred, average=None, zero_division=0)
    precision = skm.precision_score(y, pred, average=None, zero_division=0)
    for c in present:
        assert r["per_class"][f"c{c}"]["F1"] == pytest.approx(100 * f1[c], abs=0.01)
        assert r["per_class"][f"c{c}"]["precision"] == pytest.approx(100 * precision[c], abs=0.01)
    assert r["per_class"]["c4"]["F1"] is None
    assert 100 * float(stream(MultiLabelCounts(C, "F1"), y, logits)) == pytest.approx(r["scores"]["F1"], abs=0.01)


def test_updates_inside_tf_function_equal_eager():
    y, logits = single_label_data(seed=4)
    eager = stream(ConfusionMatrix(C), y, logits)
    metric = ConfusionMatrix(C)
    update = tf.function(metric.update_state)
    for start in range(0, len(y), 32):
        update(tf.constant(y[start:start + 32]), tf.constant(logits[start:start + 32]))
    np.testing.assert_array_equal(np.asarray(metric.result()), eager)


def test_evaluate_under_two_replicas_counts_every_sample_once(two_replicas):
    y, logits = single_label_data(n=250, seed=5)  # 250 is not a multiple of the batch: uneven last batch
    p = logits.argmax(1)
    with two_replicas.scope():
        identity = keras.Sequential([keras.Input((C,)), keras.layers.Identity()])
        identity.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         metrics=[ConfusionMatrix(C, "OA"), ConfusionMatrix(C, "AA")])
    logs = identity.evaluate(logits, y, batch_size=32, verbose=0, return_dict=True)
    present = sorted(set(y))
    assert logs["OA"] == pytest.approx(skm.accuracy_score(y, p), abs=1e-6)
    assert logs["AA"] == pytest.approx(skm.recall_score(y, p, labels=present, average="macro"), abs=1e-6)


def test_bad_arguments_name_what_was_received():
    with pytest.raises(ValueError, match="Received: score='kappa'"):
        ConfusionMatrix(8, "kappa")
    with pytest.raises(ValueError, match="Received: num_classes=1"):
        ConfusionMatrix(1)
