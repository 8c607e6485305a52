"""Cross-modal retrieval report against loop-based NumPy references and the in-batch training metric."""

import numpy as np

from sslrs_tf.evaluation.retrieval import ranks, retrieval_report
from sslrs_tf.losses.contrastive import retrieval_accuracy


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def loop_rank(query, keys, i):
    partner = float(np.dot(query, keys[i]))
    return 1 + sum(float(np.dot(query, k)) > partner for j, k in enumerate(keys) if j != i)


def test_ranks_and_report_match_loops():
    rng = np.random.default_rng(0)
    a = unit(rng.normal(size=(40, 6)))
    b = unit(a + rng.normal(size=(40, 6)) * 0.8)  # partners related, not identical
    expected = {"s1->s2": [loop_rank(a[i], b, i) for i in range(40)],
                "s2->s1": [loop_rank(b[i], a, i) for i in range(40)]}
    np.testing.assert_array_equal(ranks(a, b), expected["s1->s2"])
    report = retrieval_report(a, b)
    for name, r in expected.items():
        r = np.array(r)
        got = report["directions"][name]
        assert got["median_rank"] == np.median(r)
        for k in (1, 5, 10):
            assert got[f"top{k}"] == round(100 * np.mean(r <= k), 2)
    assert report["pairs"] == 40
    assert report["scores"]["top5"] == round((report["directions"]["s1->s2"]["top5"]
                                             + report["directions"]["s2->s1"]["top5"]) / 2, 2)
    # The same question as the training step's in-batch metric, when the batch is the whole split.
    np.testing.assert_allclose(report["scores"]["top1"], 100 * float(retrieval_accuracy(a, b, k=1)), atol=0.01)


def test_perfect_and_chance_retrieval():
    rng = np.random.default_rng(1)
    a = unit(rng.normal(size=(50, 16)))
    perfect = retrieval_report(a, a)
    assert perfect["scores"]["top1"] == 100.0 and perfect["scores"]["median_rank"] == 1.0
    chance = retrieval_report(a, unit(rng.normal(size=(50, 16))))
    assert chance["scores"]["top1"] < 20 and chance["scores"]["median_rank"] > 10
