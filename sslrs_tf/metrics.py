"""Land-cover metrics as streaming Keras metrics, and the scores derived from their counts.

Every score is computed from counts accumulated over the whole evaluation
(a confusion matrix, or per-class TP/FP/FN), never as an average of per-batch
ratios: a class absent from a batch cannot produce a NaN, and the result does
not depend on the batch size. Averages over classes (AA, average F1, mIoU) run
over the classes present in the targets, so a class that never occurs (or the
ignored label 255) is no phantom zero. The counts live in variables with
``aggregation="sum"``, so the metrics are correct under a distribution strategy.

Keras' own ``F1Score`` and ``MeanIoU`` average over all classes, absent or not,
and have no per-class accuracy or AA; hence these few classes.
"""

import keras
from keras import ops

IGNORE = 255

SINGLE_SCORES = ("OA", "AA", "F1", "O-F1")
SEGMENTATION_SCORES = ("OA", "AA", "mIoU")
MULTI_SCORES = ("F1", "O-F1")


def _safe_divide(a, b):
    return ops.where(b > 0, a / ops.maximum(b, 1e-12), ops.zeros_like(a))


def confusion_scores(confusion):
    """Scores of a confusion matrix (rows: target class, columns: predicted class).

    Returns a dict of tensors: ``per_class_accuracy`` (recall), ``per_class_precision``,
    ``per_class_f1``, ``per_class_iou``, ``present`` (classes with targets), and
    ``OA``, ``AA``, ``F1`` (macro over present classes), ``O-F1`` (micro; equals OA
    for single-label data) and ``mIoU`` (over present classes).
    """
    # float64 counts (NumPy, reports) stay float64; the metrics' float32 variables stay float32.
    dtype = "float64" if keras.backend.standardize_dtype(getattr(confusion, "dtype", "float32")) == "float64" else "float32"
    cm = ops.cast(confusion, dtype)
    tp = ops.diagonal(cm)
    targets, predicted = ops.sum(cm, axis=1), ops.sum(cm, axis=0)
    present = ops.cast(targets > 0, dtype)
    n_present = ops.maximum(ops.sum(present), 1.0)
    recall = _safe_divide(tp, targets)
    precision = _safe_divide(tp, predicted)
    f1 = _safe_divide(2.0 * tp, targets + predicted)
    iou = _safe_divide(tp, targets + predicted - tp)
    oa = _safe_divide(ops.sum(tp), ops.sum(cm))
    return {
        "per_class_accuracy": recall, "per_class_precision": precision, "per_class_f1": f1, "per_class_iou": iou,
        "present": present,
        "OA": oa, "AA": ops.sum(recall * present) / n_present, "F1": ops.sum(f1 * present) / n_present,
        "O-F1": oa, "mIoU": ops.sum(iou * present) / n_present,
    }


def multilabel_scores(tp, fp, fn):
    """Per-class precision, recall and F1 from per-class counts; ``F1`` (macro over classes with
    positive targets) and ``O-F1`` (micro: F1 of the summed counts)."""
    tp, fp, fn = (ops.cast(x, "float32") for x in (tp, fp, fn))
    present = ops.cast(tp + fn > 0, "float32")
    f1 = _safe_divide(2.0 * tp, 2.0 * tp + fp + fn)
    return {
        "per_class_precision": _safe_divide(tp, tp + fp), "per_class_recall": _safe_divide(tp, tp + fn),
        "per_class_f1": f1, "present": present,
        "F1": ops.sum(f1 * present) / ops.maximum(ops.sum(present), 1.0),
        "O-F1": _safe_divide(2.0 * ops.sum(tp), 2.0 * ops.sum(tp) + ops.sum(fp) + ops.sum(fn)),
    }


@keras.saving.register_keras_serializable(package="sslrs_tf")
class ConfusionMatrix(keras.metrics.Metric):
    """Streaming confusion matrix of class predictions; its ``result()`` is one score of it.

    Args:
        num_classes: number of classes.
        score: the score ``result()`` returns: ``"OA"``, ``"AA"``, ``"F1"``, ``"O-F1"``,
            ``"mIoU"``, or ``"matrix"`` for the ``[C, C]`` counts themselves.
        ignore_class: target value that is not counted (255: no label).
        name: metric name (default: the score).

    ``update_state(y_true, y_pred)`` takes integer targets of any shape and
    either logits/probabilities with one more axis (argmax is taken) or integer predictions.

    Example:
    >>> model.compile(loss=..., metrics=[ConfusionMatrix(8, "AA"), ConfusionMatrix(8, "OA")])
    """

    def __init__(self, num_classes, score="matrix", ignore_class=IGNORE, name=None, dtype=None):
        if score not in (*SINGLE_SCORES, "mIoU", "matrix"):
            raise ValueError(f"`score` must be one of OA, AA, F1, O-F1, mIoU, matrix. Received: score={score!r}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}")
        super().__init__(name=name or score, dtype=dtype)
        self.num_classes, self.score, self.ignore_class = num_classes, score, ignore_class
        self.counts = self.add_variable(shape=(num_classes, num_classes), initializer="zeros",
                                        dtype="float32", aggregation="sum", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = ops.convert_to_tensor(y_true), ops.convert_to_tensor(y_pred)
        if len(y_pred.shape) == len(y_true.shape) + 1:
            y_pred = ops.argmax(y_pred, axis=-1)
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        y_pred = ops.reshape(ops.cast(y_pred, "int32"), (-1,))
        valid = ops.logical_and(ops.not_equal(y_true, self.ignore_class),
                                ops.logical_and(y_true >= 0, y_true < self.num_classes))
        weight = ops.cast(valid, "float32")
        if sample_weight is not None:
            weight = weight * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        c = self.num_classes
        index = ops.where(valid, y_true * c + ops.clip(y_pred, 0, c - 1), 0)
        # A segment sum over the c * c cells, not a bincount: its size is a constant, as XLA needs.
        counts = ops.segment_sum(weight, index, num_segments=c * c)
        self.counts.assign_add(ops.reshape(counts, (c, c)))

    def result(self):
        if self.score == "matrix":
            return ops.convert_to_tensor(self.counts)
        return confusion_scores(self.counts)[self.score]

    def reset_state(self):
        self.counts.assign(ops.zeros_like(self.counts))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "score": self.score,
                "ignore_class": self.ignore_class}


@keras.saving.register_keras_serializable(package="sslrs_tf")
class MultiLabelCounts(keras.metrics.Metric):
    """Streaming per-class TP/FP/FN of multi-label predictions at a threshold; ``result()`` is one score.

    Args:
        num_classes: number of classes.
        score: ``"F1"`` (macro over classes with positive targets), ``"O-F1"`` (micro),
            or ``"counts"`` (``[3, C]``: TP, FP, FN).
        threshold: a class is predicted when its probability exceeds this (0.5).
        from_logits: `y_pred` are logits (a sigmoid is applied) rather than probabilities.
        name: metric name (default: the score).

    Example:
    >>> model.compile(loss=..., metrics=[MultiLabelCounts(8, "F1"), MultiLabelCounts(8, "O-F1")])
    """

    def __init__(self, num_classes, score="counts", threshold=0.5, from_logits=True, name=None, dtype=None):
        if score not in (*MULTI_SCORES, "counts"):
            raise ValueError(f"`score` must be one of F1, O-F1, counts. Received: score={score!r}")
        super().__init__(name=name or score, dtype=dtype)
        self.num_classes, self.score, self.threshold, self.from_logits = num_classes, score, threshold, from_logits
        self.counts = self.add_variable(shape=(3, num_classes), initializer="zeros",
                                        dtype="float32", aggregation="sum", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.cast(y_pred, "float32")
        prob = ops.sigmoid(y_pred) if self.from_logits else y_pred
        pred = ops.cast(prob > self.threshold, "float32")
        true = ops.cast(ops.cast(y_true, "float32") > 0.5, "float32")
        weight = 1.0 if sample_weight is None else ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))
        tp = ops.sum(pred * true * weight, axis=0)
        fp = ops.sum(pred * (1.0 - true) * weight, axis=0)
        fn = ops.sum((1.0 - pred) * true * weight, axis=0)
        self.counts.assign_add(ops.stack([tp, fp, fn]))

    def result(self):
        if self.score == "counts":
            return ops.convert_to_tensor(self.counts)
        return multilabel_scores(*ops.unstack(self.counts, axis=0))[self.score]

    def reset_state(self):
        self.counts.assign(ops.zeros_like(self.counts))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "score": self.score,
                "threshold": self.threshold, "from_logits": self.from_logits}
