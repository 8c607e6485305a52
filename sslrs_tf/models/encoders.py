"""Encoders: one backbone per modality, any input channel count, pooled vector plus multi-scale maps.

The ResNets are keras-hub's ``ResNetBackbone`` built from constructor arguments
(its preset shortcuts download weights; these do not). Its BatchNormalization
layers are switched to ``synchronized=True``: under a distribution strategy the
batch statistics then cover the global batch, as SimCLR's global BN does — per-
replica statistics let a contrastive model tell replicas apart, and would make a
multi-device run differ from a one-device run on the same global batch.
"""

import keras
import keras_hub

RESNETS = {
    # depth: (block type, blocks per stage, output width / base width)
    18: ("basic_block", [2, 2, 2, 2], 8),
    34: ("basic_block", [3, 4, 6, 3], 8),
    50: ("bottleneck_block", [3, 4, 6, 3], 32),
}
BACKBONES = {f"resnet{depth}": depth for depth in RESNETS}


def synchronize_batch_norm(model):
    """Makes every BatchNormalization of `model` compute its statistics over all replicas."""
    for layer in model._flatten_layers(include_self=False, recursive=True):  # noqa: SLF001
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
    return model


def resnet_encoder(backbone, in_channels, sync_bn=True, width=64, name=None):
    """A ResNet encoder for `in_channels` input channels.

    Args:
        backbone: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        in_channels: input channels (2 for S1, 13 for S2, 15 for S1+S2 stacked).
        sync_bn: batch statistics over all replicas (see the module docstring).
        width: filters of the first stage (64 in the published ResNets; smaller
            for quick runs and tests); stages have width x 1, 2, 4, 8.
        name: the model's name.

    Returns:
        A functional ``keras.Model`` from ``[B, H, W, in_channels]`` to a dict:
        ``pooled`` ``[B, D]`` (global average of the last stage; D = 512 or 2048 at width 64)
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
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"`width` must be a positive integer. Received: width={width!r}")
    block, blocks, _ = RESNETS[BACKBONES[backbone]]
    net = keras_hub.models.ResNetBackbone(
        input_conv_filters=[width],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[width, 2 * width, 4 * width, 8 * width],
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


def feature_dim(backbone, width=64):
    """Width of the pooled vector of `backbone` at base `width`."""
    return RESNETS[BACKBONES[backbone]][2] * width
