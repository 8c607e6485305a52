import numpy as np
import pytest
import keras

from sslrs_tf.models.batch_norm import fuse_batch_norm, synchronize_batch_norm


def _reference(x, gamma, beta, moving_mean, moving_var, upstream, momentum, epsilon):
    """BatchNormalization's training step in float64 NumPy: output, new moving statistics, gradients."""
    x, upstream = x.astype(np.float64), upstream.astype(np.float64)
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    xhat = (x - mean) / np.sqrt(var + epsilon)
    dx = gamma / np.sqrt(var + epsilon) * (upstream - upstream.mean((0, 1, 2))
                                           - xhat * (upstream * xhat).mean((0, 1, 2)))
    return {"y": gamma * xhat + beta, "moving_mean": momentum * moving_mean + (1 - momentum) * mean,
            "moving_variance": momentum * moving_var + (1 - momentum) * var,
            "dx": dx, "dgamma": (upstream * xhat).sum((0, 1, 2)), "dbeta": upstream.sum((0, 1, 2))}


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "tf.function"])
def test_fused_batch_norm_trains_as_the_formula(traced):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 5, 6, 3)) * [1.0, 3.0, 0.2] + [0.0, 5.0, -2.0]).astype(np.float32)
    upstream = rng.standard_normal(x.shape).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    moving_mean, moving_var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    inputs = keras.Input((5, 6, 3))
    layer = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    model = fuse_batch_norm(keras.Model(inputs, layer(inputs)))
    for variable, value in zip((layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance),
                               (gamma, beta, moving_mean, moving_var)):
        variable.assign(value.astype(np.float32))

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=True)
            loss = tf.reduce_sum(y * upstream)
        return (y, *tape.gradient(loss, [x, layer.gamma, layer.beta]))

    run = tf.function(step) if traced else step
    y, dx, dgamma, dbeta = run(tf.constant(x))
    want = _reference(x, gamma, beta, moving_mean, moving_var, upstream, 0.9, 1e-3)
    got = {"y": y, "moving_mean": layer.moving_mean, "moving_variance": layer.moving_variance,
           "dx": dx, "dgamma": dgamma, "dbeta": dbeta}
    for name, value in got.items():
        np.testing.assert_allclose(np.asarray(value), want[name], rtol=1e-4, atol=1e-4, err_msg=name)
    if traced:  # the fused kernel did it, not Keras' element-wise ops
        ops = {op.type for op in run.get_concrete_function(tf.constant(x)).graph.get_operations()}
        assert "FusedBatchNormV3" in ops and "SquaredDifference" not in ops
    # Inference: the moving statistics, through Keras' own call.
    stats = want["moving_mean"], want["moving_variance"]
    expected = gamma * (x - stats[0]) / np.sqrt(stats[1] + 1e-3) + beta
    np.testing.assert_allclose(np.asarray(model(x, training=False)), expected, rtol=1e-4, atol=1e-4)


def test_fused_batch_norm_keeps_its_gradient_on_a_channel_whose_mean_dwarfs_its_spread():
    # 100 + 0.01 N: the kernels' one-pass variance, E[x²] - E[x]², cancels there (the input's batch mean is
    # subtracted first; without it the gradient was 2e-4 of its size off, here float32 rounding: ~2e-7).
    import tensorflow as tf

    rng = np.random.default_rng(1)
    x = (100.0 + 0.01 * rng.standard_normal((16, 6, 6, 2))).astype(np.float32)
    upstream = rng.standard_normal(x.shape).astype(np.float32)
    inputs = keras.Input((6, 6, 2))
    layer = keras.layers.BatchNormalization(epsilon=1e-5)
    model = fuse_batch_norm(keras.Model(inputs, layer(inputs)))
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        loss = tf.reduce_sum(model(x_t, training=True) * upstream)
    dx = tape.gradient(loss, x_t).numpy()
    want = _reference(x, np.ones(2), np.zeros(2), np.zeros(2), np.ones(2), upstream, 0.99, 1e-5)
    assert np.abs(dx - want["dx"]).max() / np.abs(want["dx"]).max() < 1e-5
    np.testing.assert_allclose(layer.moving_mean.numpy(), want["moving_mean"], rtol=1e-6)


def test_synchronized_batch_norm_statistics_are_the_global_batchs_even_where_keras_cancels(two_replicas):
    import tensorflow as tf

    # Channel 0: mean 100, spread 1e-3 (a near-constant band); E[x²] - E[x]² loses it in float32.
    rng = np.random.default_rng(0)
    x = np.stack([100 + 1e-3 * rng.standard_normal((8, 4, 4)), rng.standard_normal((8, 4, 4))], -1)
    x = x.astype(np.float32)
    with two_replicas.scope():
        inputs = keras.Input((4, 4, 2))
        layer = keras.layers.BatchNormalization()
        synchronize_batch_norm(keras.Model(inputs, layer(inputs)))

    @tf.function
    def moments(shards):
        def per_replica(shard):
            ours = layer._moments(shard, None)
            theirs = keras.ops.moments(shard, axes=[0, 1, 2], synchronized=True)
            return ours + theirs
        return two_replicas.run(per_replica, args=(shards,))

    shards = two_replicas.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(x[ctx.replica_id_in_sync_group * 4:][:4]))
    outputs = moments(shards)
    mean, var = x.astype(np.float64).mean((0, 1, 2)), x.astype(np.float64).var((0, 1, 2))
    ours_mean, ours_var, keras_mean, keras_var = (two_replicas.experimental_local_results(o) for o in outputs)
    for m, v in zip(ours_mean, ours_var):  # every replica: the statistics of the global batch
        np.testing.assert_allclose(m.numpy(), mean, rtol=1e-6)
        np.testing.assert_allclose(v.numpy(), var, rtol=1e-3)
    # Keras' own synchronized variance of the near-constant channel is off by far more.
    assert abs(keras_var[0].numpy()[0] - var[0]) > 10 * abs(ours_var[0].numpy()[0] - var[0])
