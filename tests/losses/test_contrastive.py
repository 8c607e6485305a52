"""Contrastive losses against plain NumPy references."""

import numpy as np
import pytest

from sslrs_tf.losses.contrastive import (
    moco_info_nce,
    queue_logits,
    embedding_spread,
    nt_xent,
    patch_embedding,
    retrieval_accuracy,
    symmetric_info_nce,
)


def np_nt_xent(a, b, t):
    z = np.concatenate([a, b]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        sims = np.array([z[i] @ z[j] / t for j in range(n2) if j != i])
        total += -(z[i] @ z[pos] / t) + np.log(np.exp(sims).sum())
    return total / n2


def np_topk(a, b, k):
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    sim = an @ bn.T
    hits = []
    for s in (sim, sim.T):
        for i in range(len(s)):
            hits.append(np.sum(s[i] > s[i, i]) < k)
    return np.mean(hits)


@pytest.mark.parametrize("t", [0.07, 0.2, 1.0])
def test_nt_xent_matches_numpy(t):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(6, 5)).astype(np.float32)
    np.testing.assert_allclose(float(nt_xent(a, b, t)), np_nt_xent(a, b, t), rtol=1e-4)


def test_replica_shards_average_to_the_global_loss():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=(8, 4)).astype(np.float32)
    shards = [float(nt_xent(a[i:i + 4], b[i:i + 4], 0.1, all_a=a, all_b=b, offset=i)) for i in (0, 4)]
    np.testing.assert_allclose(np.mean(shards), np_nt_xent(a, b, 0.1), rtol=1e-4)
    acc = [float(retrieval_accuracy(a[i:i + 4], b[i:i + 4], a, b, offset=i, k=2)) for i in (0, 4)]
    np.testing.assert_allclose(np.mean(acc), np_topk(a, b, 2), rtol=1e-6)


def test_aligned_pairs_give_low_loss_and_perfect_retrieval():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(16, 32)).astype(np.float32)
    assert float(retrieval_accuracy(a, a * 3.0, k=1)) == 1.0
    assert float(nt_xent(a, a, 0.07)) < float(nt_xent(a, rng.normal(size=(16, 32)).astype(np.float32), 0.07))
    for k in (1, 5):
        b = rng.normal(size=(16, 32)).astype(np.float32)
        np.testing.assert_allclose(float(retrieval_accuracy(a, b, k=k)), np_topk(a, b, k))


def test_spread_is_one_when_spread_and_zero_when_collapsed():
    rng = np.random.default_rng(3)
    assert 0.8 < float(embedding_spread(rng.normal(size=(4000, 16)).astype(np.float32))) < 1.2
    collapsed = np.ones((64, 16), np.float32) + 1e-4 * rng.normal(size=(64, 16)).astype(np.float32)
    assert float(embedding_spread(collapsed)) < 0.01


def np_patch_similarity(fa, fb):
    """Mean over pixels of the cosine similarity of aligned pixels, for every pair (loops, float64)."""
    fa, fb = fa.astype(np.float64), fb.astype(np.float64)
    out = np.zeros((len(fa), len(fb)))
    for i in range(len(fa)):
        for j in range(len(fb)):
            cos = [np.dot(p, q) / np.linalg.norm(p) / np.linalg.norm(q)
                   for p, q in zip(fa[i].reshape(-1, fa.shape[-1]), fb[j].reshape(-1, fb.shape[-1]), strict=True)]
            out[i, j] = np.mean(cos)
    return out


def np_symmetric_info_nce(sim, t):
    logits = sim / t

    def ce(m):
        return np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(m)])

    return (ce(logits) + ce(logits.T)) / 2


def test_patch_similarity_and_symmetric_info_nce_match_numpy():
    rng = np.random.default_rng(4)
    fa = rng.normal(size=(6, 3, 4, 5)).astype(np.float32)
    fb = rng.normal(size=(6, 3, 4, 5)).astype(np.float32)
    a, b = np.asarray(patch_embedding(fa)), np.asarray(patch_embedding(fb))
    sim = np_patch_similarity(fa, fb)
    np.testing.assert_allclose(a @ b.T, sim, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(symmetric_info_nce(a, b, 0.1)), np_symmetric_info_nce(sim, 0.1), rtol=1e-5)
    # Split over two replicas: the mean of the shards' losses is the global loss.
    shards = [float(symmetric_info_nce(a[i:i + 3], b[i:i + 3], 0.1, a, b, offset=i)) for i in (0, 3)]
    np.testing.assert_allclose(np.mean(shards), np_symmetric_info_nce(sim, 0.1), rtol=1e-5)


def test_patch_similarity_sees_where_not_only_what():
    rng = np.random.default_rng(5)
    fa = rng.normal(size=(1, 4, 4, 8)).astype(np.float32)
    moved = np.roll(fa, 2, axis=2)  # the same content, shifted: pooled features would call it identical
    a, same, shifted = (np.asarray(patch_embedding(f)) for f in (fa, fa * 2.0, moved))
    assert (a @ same.T).item() == pytest.approx(1.0, abs=1e-6)
    assert (a @ shifted.T).item() < 0.5
    pooled = [f.mean(axis=(1, 2))[0] for f in (fa, moved)]
    np.testing.assert_allclose(pooled[0], pooled[1], rtol=1e-5)


def test_moco_info_nce_matches_numpy():
    rng = np.random.default_rng(5)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    q, k, queue = unit(rng.normal(size=(6, 8))), unit(rng.normal(size=(6, 8))), unit(rng.normal(size=(20, 8)))
    expected = []
    for i in range(6):  # one query at a time: its key first, then every queued key
        logits = np.array([q[i] @ k[i], *(q[i] @ n for n in queue)]) / 0.2
        expected.append(np.log(np.exp(logits).sum()) - logits[0])
    got = moco_info_nce(q.astype(np.float32), k.astype(np.float32), queue.astype(np.float32), 0.2)
    assert float(got) == pytest.approx(np.mean(expected), rel=1e-5)
    assert np.asarray(queue_logits(q, k, queue, 0.2)).shape == (6, 21)
