"""Scores as they are reported: plain numbers for ``metrics.json``, markdown tables for people.

The streaming metrics that count during training and evaluation are in :mod:`sslrs_tf.metrics`;
this module turns their counts into per-class and headline percentages, and a run's result
into a table.
"""

import numpy as np

from sslrs_tf.metrics import MULTI_SCORES, SEGMENTATION_SCORES, SINGLE_SCORES, confusion_scores, multilabel_scores


def report(counts, kind, class_names):
    """Plain-Python scores from a metric's counts, for metrics.json and tables.

    Args:
        counts: ``ConfusionMatrix(score="matrix").result()`` (kinds ``single``,
            ``segmentation``) or ``MultiLabelCounts(score="counts").result()`` (``multi``).
        kind: ``"single"``, ``"multi"`` or ``"segmentation"``.
        class_names: one name per class.

    Returns:
        ``{"scores": {name: %}, "per_class": {class: {score: %}}, "support": {class: n}}``;
        percentages rounded to 0.01; classes absent from the targets get ``None``
        per-class values, not zeros.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if kind == "multi":
        s = multilabel_scores(*counts)
        per_class_keys = {"precision": "per_class_precision", "recall": "per_class_recall", "F1": "per_class_f1"}
        headline = MULTI_SCORES
        support = counts[0] + counts[2]
    else:
        s = confusion_scores(counts)
        if kind == "segmentation":
            per_class_keys = {"accuracy": "per_class_accuracy", "IoU": "per_class_iou"}
            headline = SEGMENTATION_SCORES
        else:
            per_class_keys = {"accuracy": "per_class_accuracy", "precision": "per_class_precision",
                              "recall": "per_class_accuracy", "F1": "per_class_f1"}
            headline = SINGLE_SCORES
        support = counts.sum(axis=1)
    s = {k: np.asarray(v) for k, v in s.items()}
    per_class = {}
    for i, name in enumerate(class_names):
        present = bool(s["present"][i])
        per_class[name] = {k: round(100 * float(s[v][i]), 2) if present else None for k, v in per_class_keys.items()}
    return {"scores": {k: round(100 * float(s[k]), 2) for k in headline}, "per_class": per_class,
            "support": {name: int(n) for name, n in zip(class_names, support, strict=True)}}


def markdown_table(result):
    """One run's metrics as a markdown table: a row per class, the averages last (retrieval: a row per direction)."""
    if "directions" in result:
        from sslrs_tf.evaluation.retrieval import markdown_table as retrieval_table

        return retrieval_table(result)
    per_class = result["per_class"]
    columns = list(next(iter(per_class.values())))
    lines = [f"| class | {' | '.join(columns)} | support |", "|---" * (len(columns) + 2) + "|"]
    for name, values in per_class.items():
        cells = ["–" if values[c] is None else f"{values[c]:.1f}" for c in columns]
        lines.append(f"| {name} | {' | '.join(cells)} | {result['support'][name]} |")
    scores = " · ".join(f"{k} {v:.1f}" for k, v in result["scores"].items())
    note = " — SYNTHETIC data" if result.get("synthetic") else ""
    return "\n".join([f"{result['run']} on {result['split']} ({result['label']}-label){note}", "", *lines, "",
                      f"**{scores}** (%)"])
