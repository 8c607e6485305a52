"""Reports of a run's scores: the markdown table of a report (its numbers are tested against
scikit-learn in tests/test_metrics.py)."""

import numpy as np

from sslrs_tf.evaluation.reports import markdown_table, report


def test_the_table_has_a_row_per_class_dashes_for_absent_classes_and_the_averages():
    confusion = np.array([[3, 1, 0], [0, 0, 0], [1, 0, 5]])  # class "b" never occurs
    result = {**report(confusion, "single", ["a", "b", "c"]), "run": "runs/x", "split": "test", "label": "single",
              "synthetic": True}
    lines = markdown_table(result).splitlines()
    assert lines[0] == "runs/x on test (single-label) — SYNTHETIC data"
    assert lines[2] == "| class | accuracy | precision | recall | F1 | support |"
    assert lines[4] == "| a | 75.0 | 75.0 | 75.0 | 75.0 | 4 |"  # 3 of 4 right; 3 of 4 predictions right
    assert lines[5] == "| b | – | – | – | – | 0 |"
    assert lines[6].startswith("| c | 83.3 |")
    oa, aa = 100 * 8 / 10, 100 * (3 / 4 + 5 / 6) / 2  # AA over the two classes present
    assert lines[-1] == f"**OA {oa:.1f} · AA {aa:.1f} · F1 {result['scores']['F1']:.1f} · O-F1 {oa:.1f}** (%)"
