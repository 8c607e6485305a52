"""Encoders: one backbone per modality, any input channel count, pooled vector plus multi-scale maps.

:func:`make_encoder` builds any of them by name: the ResNets below, or the Swin
Transformers of :mod:`sslrs_tf.models.swin` (which are built for one input size).

The ResNets are keras-hub's ``ResNetBackbone`` built from constructor arguments
(its preset shortcuts download weights; these do not). Its BatchNormalization
layers are switched to ``synchronized=True``: under a distribution strategy the
batch statistics then cover the global batch, as SimCLR's global BN does — per-
replica statistics let a contrastive model tell replicas apart, and would make a
multi-device run differ from a one-device run on the same global batch.
"""

import functools

import keras
import keras_hub
import tensorflow as tf

from sslrs_tf.models.swin import SWINS, swin_dim, swin_encoder

RESNETS = {
    # depth: (block type, blocks per stage, output width)
    # ResNet-10 is no published encoder: one block per stage, for quick runs and
    # tests (keras-hub fixes the first stage at 64 filters, so depth is what can shrink).
    10: ("basic_block", [1, 1, 1, 1], 512),
    18: ("basic_block", [2, 2, 2, 2], 512),
    34: ("basic_block", [3, 4, 6, 3], 512),
    50: ("bottleneck_block", [3, 4, 6, 3], 2048),
}
BACKBONES = {f"resnet{depth}": depth for depth in RESNETS}


def synchronize_batch_norm(model):
    """Makes every BatchNormalization of `model` compute its statistics over all replicas.

    With the mean and variance of :func:`synchronized_moments`, not Keras' own: Keras
    (3.15, TF backend) takes the variance as E[x²] − E[x]² of the replicas' sums, which
    cancels when a channel's mean is large against its spread (near-constant bands, stems on
    offset inputs) and made a two-worker run's weights differ from one device's by up to 2e-3
    after two SGD steps. Set per layer: keras-hub builds the layers.
    """
    for layer in model._flatten_layers(include_self=False, recursive=True):  # noqa: SLF001
        if isinstance(layer, keras.layers.BatchNormalization):
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


def resnet_encoder(backbone, in_channels, sync_bn=True, name=None):
    """A ResNet encoder for `in_channels` input channels.

    Args:
        backbone: ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, or ``"resnet10"`` (quick runs, tests).
        in_channels: input channels (2 for S1, 13 for S2, 15 for S1+S2 stacked).
        sync_bn: batch statistics over all replicas (see the module docstring).
        name: the model's name.

    Returns:
        A functional ``keras.Model`` from ``[B, H, W, in_channels]`` to a dict:
        ``pooled`` ``[B, D]`` (global average of the last stage; D = 512 or 2048)
        and ``P2`` ... ``P5``, the stage outputs at strides 4, 8, 16, 32.

    Example:
    >>> encoder = resnet_encoder("resnet18", 13)
    >>> encoder(np.zeros((2, 128, 128, 13)))["pooled"].shape
    TensorShape([2, 512])
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(BACKBONES)}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"`in_channels` must be a positive integer. Received: in_channels={in_channels!r}")
    block, blocks, _ = RESNETS[BACKBONES[backbone]]
    net = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=blocks,
        stackwise_num_strides=[1, 2, 2, 2],
        block_type=block,
        use_pre_activation=False,
        image_shape=(None, None, in_channels),
        name=f"{name or backbone}_backbone",
    )
    if sync_bn:
        synchronize_batch_norm(net)
    inputs = keras.Input((None, None, in_channels), name="image")
    maps = net.pyramid_outputs
    features = keras.Model(net.inputs, maps, name=f"{name or backbone}_features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features["P5"])
    return keras.Model(inputs, {"pooled": pooled, **features}, name=name or backbone)


def feature_dim(backbone):
    """Width of the pooled vector of `backbone`."""
    if backbone in SWINS:
        return swin_dim(backbone)
    return RESNETS[BACKBONES[backbone]][2]


def make_encoder(backbone, in_channels, sync_bn=True, image_size=None, name=None):
    """The encoder `backbone` (a ResNet or a Swin) for `in_channels` channels.

    `image_size` is the input side a Swin is built for (ResNets take any size and
    ignore it); `sync_bn` applies to ResNets (Swins have LayerNorm, nothing to sync).
    Both return ``pooled`` and ``P2``-``P5``.
    """
    if backbone in SWINS:
        if image_size is None:
            raise ValueError(f"a Swin encoder is built for one input size: pass `image_size`. "
                             f"Received: backbone={backbone!r}, image_size=None")
        return swin_encoder(backbone, in_channels, image_size, name=name)
    return resnet_encoder(backbone, in_channels, sync_bn, name=name)


def is_encoder(backbone):
    """Whether `backbone` names an encoder :func:`make_encoder` builds (a ResNet or a Swin)."""
    return backbone in BACKBONES or backbone in SWINS
