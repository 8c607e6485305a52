"""Cross-modal retrieval of a pre-training run: how well S1 finds its S2 partner (and back) in a whole split.

The training step reports top-1/top-5 within each batch; this is the same
question asked of every pair of a held-out split at once (the MMA paper's
report): for each S1 patch, the rank of its co-located S2 patch among all S2
patches of the split by similarity, and the reverse. Similarities are the
method's own (:meth:`~sslrs_tf.methods.base.ContrastiveMethod.embed`): cosine of
Dual-SimCLR's projections, MMA's patch similarity.
"""

import numpy as np

KS = (1, 5, 10)


def ranks(queries, keys):
    """1-based rank of each query's partner (same index) among all `keys`, by dot product (ties count in favour)."""
    sim = np.asarray(queries, np.float64) @ np.asarray(keys, np.float64).T
    partner = np.diag(sim)[:, None]
    return 1 + np.sum(sim > partner, axis=1)


def retrieval_report(a, b, ks=KS):
    """Top-k (%) and median rank in both directions, and their means.

    Args:
        a, b: ``[N, d]`` unit-norm embeddings of the N pairs (S1, S2).

    Returns:
        ``{"scores": {"top1": %, ..., "median_rank": r}, "directions": {"s1->s2": {...}, "s2->s1": {...}}, "pairs": N}``.
    """
    directions = {}
    for name, (q, k) in {"s1->s2": (a, b), "s2->s1": (b, a)}.items():
        r = ranks(q, k)
        directions[name] = {**{f"top{k_}": round(100 * float(np.mean(r <= k_)), 2) for k_ in ks},
                            "median_rank": float(np.median(r))}
    scores = {key: round(float(np.mean([d[key] for d in directions.values()])), 2) for key in directions["s1->s2"]}
    return {"scores": scores, "directions": directions, "pairs": int(len(a))}


def embed_split(model, dataset):
    """Unit-norm embeddings ``(s1, s2)`` (NumPy) of every pair of an unlabelled `dataset` (``model.embed``)."""
    s1, s2 = [], []
    for inputs in dataset:
        z = model.embed(inputs)
        s1.append(np.asarray(z["s1"]))
        s2.append(np.asarray(z["s2"]))
    return np.concatenate(s1), np.concatenate(s2)


def markdown_table(result):
    """A retrieval report as a markdown table: one row per direction, then the mean."""
    keys = list(result["scores"])
    lines = [f"| direction | {' | '.join(keys)} |", "|---" * (len(keys) + 1) + "|"]
    for name, values in [*result["directions"].items(), ("mean", result["scores"])]:
        lines.append(f"| {name} | {' | '.join(f'{values[k]:g}' for k in keys)} |")
    note = " — SYNTHETIC data" if result.get("synthetic") else ""
    return "\n".join([f"{result['run']}: cross-modal retrieval on {result['split']} ({result['pairs']} pairs, "
                      f"top-k in %){note}", "", *lines])
