"""BatchNormalization as the encoders train it: global statistics on several replicas, optionally a fused kernel.

:func:`synchronize_batch_norm` (every encoder, ``model.sync_bn``) takes the statistics over the
global batch; on one replica they are Keras' own (``tf.nn.moments``), the same two-pass
arithmetic. :func:`fuse_batch_norm` (``model.fused_batch_norm``, off by default) trains through
TF's fused kernel on one replica instead: Keras 3 (TF backend) trains BatchNormalization from a
dozen element-wise ops (moments, normalise, and their gradients), about a fifth of the op time
of a Dual-SimCLR or MoCo ResNet-50 step in a profile, where TF has one kernel for the forward
pass and one for its gradient (``FusedBatchNormV3``, oneDNN's on CPU, cuDNN's on GPU). It is
off by default because its rounding differs from the element-wise path that several replicas
take: measured once, a one-device run and a two-worker run of the quick start differed by 9e-5
after one SGD step (1.6e-7 without it).

Both switches are set per layer instance (keras-hub builds the ResNets' layers), change
no variables, and leave saved ``.keras`` files plain Keras layers.
"""

import functools

import keras
import tensorflow as tf


def _batch_norm_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)  # noqa: SLF001
            if isinstance(layer, keras.layers.BatchNormalization)]


def synchronize_batch_norm(model):
    """Makes every BatchNormalization of `model` compute its statistics over all replicas.

    With the mean and variance of :func:`synchronized_moments`, not Keras' own: Keras
    (3.15, TF backend) takes the variance as E[x²] − E[x]² of the replicas' sums, which
    cancels when a channel's mean is large against its spread (near-constant bands, stems on
    offset inputs) and made a two-worker run's weights differ from one device's by up to 2e-3
    after two SGD steps.
    """
    for layer in _batch_norm_layers(model):
        layer.synchronized = True
        layer._moments = functools.partial(synchronized_moments, layer)  # noqa: SLF001
    return model


def synchronized_moments(layer, inputs, mask=None):
    """Mean and variance of `inputs` over `layer`'s reduction axes and over all replicas, in two passes.

    One all-reduce of (sum, count) gives the global mean, a second one the sum of squared
    deviations from it: the variance one device computes, up to summation order. Outside a
    multi-replica step, or with a mask, the layer's own statistics.
    """
    context = tf.distribute.get_replica_context()
    if mask is not None or context is None or context.num_replicas_in_sync == 1:
        return type(layer)._moments(layer, inputs, mask)  # noqa: SLF001
    x = tf.cast(inputs, "float32")  # statistics in float32 under mixed precision, as Keras does
    axes = layer._reduction_axes  # noqa: SLF001
    sums = tf.reduce_sum(x, axes, keepdims=True)
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), "float32")
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.concat([tf.reshape(sums, [-1]), [count]], axis=0))
    count = total[-1]
    mean = tf.reshape(tf.math.divide_no_nan(total[:-1], count), tf.shape(sums))
    squares = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(tf.square(x - mean), axes))
    variance = tf.math.divide_no_nan(squares, count)
    mean = tf.squeeze(mean, axes)
    if inputs.dtype == tf.float16:  # as Keras: keep the statistics finite in float16
        mean, variance = (tf.clip_by_value(t, tf.float16.min, tf.float16.max) for t in (mean, variance))
    return tf.cast(mean, inputs.dtype), tf.cast(variance, inputs.dtype)


def fuse_batch_norm(model):
    """Makes every BatchNormalization of `model` (nested models included) train through TF's fused kernel
    (:func:`fused_call`) on one replica. Returns `model`."""
    for layer in _batch_norm_layers(model):
        layer.call = functools.partial(fused_call, layer)
    return model


def fused_call(layer, inputs, training=None, mask=None):
    """`layer`'s training call on ``[B, H, W, C]`` inputs as one ``FusedBatchNormV3`` (forward and gradient).

    The same function as Keras' layer: normalised by the batch's biased variance, the moving
    statistics updated with it at the layer's momentum, computed in float32 and returned in
    the layer's compute dtype. Everything else takes Keras' own call: inference, a mask,
    renorm, other ranks or channel axes, and a synchronized layer under several replicas
    (the fused kernel sees one replica's batch only).
    """
    context = tf.distribute.get_replica_context()
    several = context is not None and context.num_replicas_in_sync > 1
    if (not (training and layer.trainable) or mask is not None or layer.renorm or len(inputs.shape) != 4
            or layer.axis not in (-1, 3) or (layer.synchronized and several)):
        return type(layer).call(layer, inputs, training=training, mask=mask)
    x = tf.cast(inputs, "float32")
    channels = x.shape[-1]
    scale = tf.cast(layer.gamma, "float32") if layer.scale else tf.ones([channels])
    offset = tf.cast(layer.beta, "float32") if layer.center else tf.zeros([channels])
    # On a channel whose mean is large against its spread (100 + 0.01 N) the kernel's gradient came out
    # 2e-4 of its size off the float64 formula, as a one-pass variance (E[x²] - E[x]²) cancels. Batch
    # norm does not change when a constant is subtracted from a channel (output and gradient alike), so
    # the kernel gets the channel minus its batch mean (then float32 rounding: ~2e-7), and the mean is
    # added back for the moving statistics.
    shift = tf.stop_gradient(tf.reduce_mean(x, axis=[0, 1, 2]))
    y, mean, unbiased, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x - shift, scale=scale, offset=offset, mean=tf.zeros([0]), variance=tf.zeros([0]),
        epsilon=layer.epsilon, exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
    mean = mean + shift
    # The kernel returns the Bessel-corrected variance; Keras' moving variance follows the biased one.
    n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), "float32")
    variance = unbiased * tf.math.divide_no_nan(n - 1.0, n)
    momentum = layer.momentum
    layer.moving_mean.assign(tf.cast(layer.moving_mean, "float32") * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(tf.cast(layer.moving_variance, "float32") * momentum + variance * (1.0 - momentum))
    return tf.cast(y, layer.compute_dtype)
