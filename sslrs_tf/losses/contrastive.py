"""Contrastive losses, as pure functions, written for a global batch split across replicas.

A replica holds `n` local pairs ``(a_i, b_i)``; the global batch of ``N`` pairs
is the concatenation of all replicas' local pairs (``all_a``, ``all_b``), and
this replica's pairs start at global index ``offset``. Each function returns
the mean over this replica's anchors; the mean of those over replicas is the
loss of the global batch. With one replica (the defaults) it is the usual loss.
"""

import keras
from keras import ops


def l2_normalize(x, axis=-1, epsilon=1e-12):
    """x / ||x||, in float32 (mixed precision keeps the similarities in full precision)."""
    x = ops.cast(x, "float32")
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), epsilon))


def nt_xent(a, b, temperature, all_a=None, all_b=None, offset=0):
    """NT-Xent (SimCLR) over the 2N projections of N pairs.

    For each of the 2N vectors the single positive is the other member of its
    pair; the other 2N - 2 vectors are negatives; the vector itself is excluded.

    Args:
        a, b: ``[n, d]`` this replica's projections of the two views (e.g. S1 and S2).
        temperature: softmax temperature.
        all_a, all_b: ``[N, d]`` the global batch (default: `a`, `b`).
        offset: global index of this replica's first pair.

    Returns:
        Scalar float32: mean cross-entropy over this replica's 2n anchors.
    """
    all_a = a if all_a is None else all_a
    all_b = b if all_b is None else all_b
    n, big_n = ops.shape(a)[0], ops.shape(all_a)[0]
    queries = ops.concatenate([l2_normalize(a), l2_normalize(b)], axis=0)  # [2n, d]
    keys = ops.concatenate([l2_normalize(all_a), l2_normalize(all_b)], axis=0)  # [2N, d]
    logits = ops.matmul(queries, ops.transpose(keys)) / temperature
    local = ops.arange(n) + offset
    self_index = ops.concatenate([local, local + big_n], axis=0)
    positive = ops.concatenate([local + big_n, local], axis=0)
    # A large negative, not -inf: exp underflows to 0 and no NaN can appear.
    logits = logits - 1e9 * ops.one_hot(self_index, 2 * big_n, dtype="float32")
    losses = keras.losses.sparse_categorical_crossentropy(positive, logits, from_logits=True)
    return ops.mean(losses)


def patch_embedding(features):
    """Flattened feature maps whose dot products are MMA's patch similarity.

    Each pixel's feature vector is L2-normalised and the map ``[B, h, w, E]`` is
    flattened and divided by ``sqrt(h * w)``: the result has unit norm, and the dot
    product of two such vectors is the mean over pixels of the cosine similarity of
    the aligned pixels. So the patch similarity of a batch is one matrix product,
    and the functions below (retrieval, spread) apply to it unchanged.

    Returns:
        ``[B, h * w * E]`` float32.
    """
    x = l2_normalize(features, axis=-1)
    shape = ops.shape(x)
    pixels = shape[1] * shape[2]
    return ops.reshape(x, (shape[0], -1)) * ops.rsqrt(ops.cast(pixels, "float32"))


def symmetric_info_nce(a, b, temperature, all_a=None, all_b=None, offset=0):
    """Symmetric InfoNCE (CLIP-style) between two modalities' unit-norm embeddings.

    The similarity matrix of the global batch is ``a . b^T``; each row (an `a`
    anchor against every `b`) and each column (a `b` anchor against every `a`)
    is a softmax cross-entropy whose positive is the partner of the same place.
    No within-modality negatives (unlike :func:`nt_xent`).

    Args:
        a, b: ``[n, d]`` this replica's embeddings, already unit-norm (e.g. :func:`patch_embedding`).
        temperature: softmax temperature (MMA: 0.1).
        all_a, all_b: ``[N, d]`` the global batch (default: `a`, `b`).
        offset: global index of this replica's first pair.

    Returns:
        Scalar float32: the mean of the two directions over this replica's anchors.
    """
    all_a = a if all_a is None else all_a
    all_b = b if all_b is None else all_b
    target = ops.arange(ops.shape(a)[0]) + offset
    rows = ops.matmul(ops.cast(a, "float32"), ops.transpose(ops.cast(all_b, "float32"))) / temperature
    cols = ops.matmul(ops.cast(b, "float32"), ops.transpose(ops.cast(all_a, "float32"))) / temperature
    ce = keras.losses.sparse_categorical_crossentropy
    return (ops.mean(ce(target, rows, from_logits=True)) + ops.mean(ce(target, cols, from_logits=True))) / 2.0


def queue_logits(q, k, queue, temperature):
    """MoCo's logits ``[n, 1 + K]``: each query against its own key (column 0), then against the K queued keys.

    Args:
        q, k: ``[n, d]`` this replica's unit-norm queries and their keys (positives).
        queue: ``[K, d]`` unit-norm keys of earlier batches (the negatives).
        temperature: softmax temperature (MoCo-v2: 0.2).
    """
    q, k, queue = (ops.cast(t, "float32") for t in (q, k, queue))
    positive = ops.sum(q * k, axis=-1, keepdims=True)
    return ops.concatenate([positive, ops.matmul(q, ops.transpose(queue))], axis=-1) / temperature


def moco_info_nce(q, k, queue, temperature):
    """MoCo's InfoNCE: softmax cross-entropy of :func:`queue_logits` with the key (column 0) as the target.

    The negatives are the queue only, the same on every replica, so no global batch is needed.
    Returns the mean over this replica's queries (float32).
    """
    logits = queue_logits(q, k, queue, temperature)
    target = ops.zeros((ops.shape(q)[0],), "int32")
    return ops.mean(keras.losses.sparse_categorical_crossentropy(target, logits, from_logits=True))


def retrieval_accuracy(a, b, all_a=None, all_b=None, offset=0, k=1):
    """Cross-modal top-`k` retrieval: how often the partner of a query is among its k most similar in the other modality.

    Averaged over both directions (a -> b and b -> a) and this replica's queries.
    """
    all_a = a if all_a is None else all_a
    all_b = b if all_b is None else all_b
    local = ops.arange(ops.shape(a)[0]) + offset
    hits = []
    for query, keys in ((a, all_b), (b, all_a)):
        sim = ops.matmul(l2_normalize(query), ops.transpose(l2_normalize(keys)))
        target = ops.take_along_axis(sim, local[:, None], axis=1)
        # Rank = number of keys more similar than the partner; a hit if rank < k.
        rank = ops.sum(ops.cast(sim > target, "float32"), axis=1)
        hits.append(ops.cast(rank < k, "float32"))
    return ops.mean(ops.concatenate(hits, axis=0))


def embedding_spread(z):
    """Spread of L2-normalised embeddings: mean per-dimension std x sqrt(d).

    About 1 for embeddings spread over the sphere, 0 when they collapse to one
    point — collapse shows here while the loss can still be falling.
    """
    z = l2_normalize(z)
    d = ops.cast(ops.shape(z)[-1], "float32")
    return ops.mean(ops.std(z, axis=0)) * ops.sqrt(d)
