"""Encoders: one backbone per modality, any input channel count, pooled vector plus multi-scale maps.

:func:`make_encoder` builds any of them by name: the ResNets below, or the Swin
Transformers of :mod:`sslrs_tf.models.swin` (which are built for one input size).

The ResNets are keras-hub's ``ResNetBackbone`` built from constructor arguments
(its preset shortcuts download weights; these do not). Its BatchNormalization
layers are switched to ``synchronized=True``: under a distribution strategy the
batch statistics then cover the global batch, as SimCLR's global BN does — per-
replica statistics let a contrastive model tell replicas apart, and would make a
multi-device run differ from a one-device run on the same global batch.
On one replica they train through TF's fused kernel (:mod:`sslrs_tf.models.batch_norm`).
"""

import keras
import keras_hub

from sslrs_tf.models.batch_norm import fuse_batch_norm, synchronize_batch_norm
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
    fuse_batch_norm(net)
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


#: every encoder :func:`make_encoder` builds: the ResNets, then the Swins
ENCODERS = (*BACKBONES, *SWINS)


def is_encoder(backbone):
    """Whether `backbone` names an encoder :func:`make_encoder` builds (a ResNet or a Swin)."""
    return backbone in ENCODERS
