import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from sslrs_tf.evaluation.linear_probe import accuracy_report, linear_probe


def test_accuracy_report_matches_sklearn_and_has_no_phantom_class():
    rng = np.random.default_rng(0)
    y = rng.choice([0, 2, 3, 7], 500)
    p = np.where(rng.random(500) < 0.6, y, rng.integers(0, 8, 500))
    report = accuracy_report(y, p, 8)
    assert report["OA"] == accuracy_score(y, p)
    np.testing.assert_allclose(report["AA"], balanced_accuracy_score(y, p))
    assert sorted(report["per_class"]) == [0, 2, 3, 7]


def test_probe_separates_separable_features():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 10)) * 3
    y = rng.integers(0, 3, 300)
    x = centres[y] + rng.normal(size=(300, 10))
    report = linear_probe((x[:200], y[:200]), (x[200:], y[200:]), 3, epochs=100)
    assert report["OA"] > 0.9
