"""Encoders: one backbone per modality, any input channel count, pooled vector plus multi-scale maps.

:func:`make_encoder` builds any of them by name: the ResNets below, the Swin
Transformers of :mod:`sslrs_tf.models.swin` (which are built for one input size), or
MMA's VGG-style encoder (:mod:`sslrs_tf.models.vgg`); optionally behind the MoCo
work's 1x1 adapter to 3 channels. Pre-training methods and downstream models build
their encoders here, so that a downstream model's encoder has the same weights, in
the same order, as the pre-trained one it starts from.

The ResNets are keras-hub's ``ResNetBackbone`` built from constructor arguments
(its preset shortcuts download weights; these do not). Its BatchNormalization
layers are switched to ``synchronized=True``: under a distribution strategy the
batch statistics then cover the global batch, as SimCLR's global BN does — per-
replica statistics let a contrastive model tell replicas apart, and would make a
multi-device run differ from a one-device run on the same global batch.
With ``model.fused_batch_norm`` they train through TF's fused kernel on one replica
(:mod:`sslrs_tf.models.batch_norm`).
"""

import keras
import keras_hub

from sslrs_tf.models.batch_norm import synchronize_batch_norm
from sslrs_tf.models.swin import SWINS, swin_dim, swin_encoder
from sslrs_tf.models.vgg import vgg_encoder

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
    if sync_bn:
        synchronize_batch_norm(net)
    inputs = keras.Input((None, None, in_channels), name="image")
    maps = net.pyramid_outputs
    features = keras.Model(net.inputs, maps, name=f"{name or backbone}_features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features["P5"])
    return keras.Model(inputs, {"pooled": pooled, **features}, name=name or backbone)


def feature_dim(backbone, embedding_dim=256):
    """Width of the pooled vector of `backbone` (``"vgg"``: its `embedding_dim`)."""
    if backbone in SWINS:
        return swin_dim(backbone)
    if backbone == "vgg":
        return embedding_dim
    return RESNETS[BACKBONES[backbone]][2]


def channel_adapter(in_channels, sync_bn=True, image_size=None, name="adapter"):
    """The MoCo work's adapter: 1x1 convolution (no bias) -> BatchNorm -> ReLU, `in_channels` to 3 channels."""
    inputs = keras.Input((image_size, image_size, in_channels))
    y = keras.layers.Conv2D(3, 1, use_bias=False, name="conv")(inputs)
    y = keras.layers.BatchNormalization(synchronized=sync_bn, name="bn")(y)
    adapter = keras.Model(inputs, keras.layers.ReLU()(y), name=name)
    return synchronize_batch_norm(adapter) if sync_bn else adapter


def make_encoder(backbone, in_channels, sync_bn=True, image_size=None, name=None, adapter=False, embedding_dim=256):
    """The encoder `backbone` for `in_channels` channels.

    Args:
        backbone: a ResNet (``"resnet18"``, ...), a Swin (``"swin_t"``, ``"swin_micro"``) or ``"vgg"``.
        in_channels: input channels.
        sync_bn: batch statistics over all replicas (ResNets, VGG, the adapter; Swins have LayerNorm).
        image_size: the input side a Swin is built for (the others take any size and ignore it).
        name: the model's name.
        adapter: put :func:`channel_adapter` (`in_channels` -> 3) before the backbone; the result
            is one model whose parts are the adapter and the backbone (``name_adapter``,
            ``name_backbone``), in that order.
        embedding_dim: ``"vgg"``: channels of its last block.

    Returns:
        A functional model from ``[B, H, W, in_channels]`` to a dict with ``pooled`` and the
        multi-scale maps: ``P2``-``P5`` (ResNets, Swins) or ``P0``-``P3`` (VGG), ``Pk`` at stride 2**k.
    """
    if adapter:
        inputs = keras.Input((image_size, image_size, in_channels), name="image")
        first = channel_adapter(in_channels, sync_bn, image_size, name=f"{name or backbone}_adapter")
        net = make_encoder(backbone, 3, sync_bn, image_size, f"{name or backbone}_backbone",
                           embedding_dim=embedding_dim)
        return keras.Model(inputs, net(first(inputs)), name=name or backbone)
    if backbone in SWINS:
        if image_size is None:
            raise ValueError(f"a Swin encoder is built for one input size: pass `image_size`. "
                             f"Received: backbone={backbone!r}, image_size=None")
        return swin_encoder(backbone, in_channels, image_size, name=name)
    if backbone == "vgg":
        return vgg_encoder(in_channels, (64, 128, 256, embedding_dim), sync_bn, name=name)
    return resnet_encoder(backbone, in_channels, sync_bn, name=name)


def encoder_parts(encoder):
    """``(adapter, backbone)`` of an encoder :func:`make_encoder` built: its 1x1 adapter (None without one)
    and the model after it (the encoder itself without an adapter)."""
    models = [layer for layer in encoder.layers if isinstance(layer, keras.Model)]
    if len(models) == 2 and models[0].name.endswith("_adapter"):
        return models[0], models[1]
    return None, encoder


def _sublayers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _sublayers(layer)


#: the stages of a ResNet encoder, in order: the stem (7x7 convolution and its BatchNorm), then the four residual
#: stages; by the prefix of keras-hub's layer names
RESNET_STAGES = ("conv1_", "stack0_", "stack1_", "stack2_", "stack3_")


def freeze_resnet_stages(encoder, stages):
    """Keeps the first `stages` of a ResNet encoder's five (:data:`RESNET_STAGES`) fixed, and its 1x1 adapter
    (which comes before them) when `stages` is at least 1. Fixed layers' BatchNorm runs in inference mode.

    Returns:
        The number of layers made non-trainable.
    """
    if not 0 <= stages <= len(RESNET_STAGES):
        raise ValueError(f"`stages` must be in [0, {len(RESNET_STAGES)}]. Received: stages={stages}")
    prefixes = RESNET_STAGES[:stages]
    adapter, _ = encoder_parts(encoder)
    frozen = 0
    if adapter is not None and stages:
        adapter.trainable = False
        frozen += 1
    for layer in _sublayers(encoder):
        if prefixes and layer.name.startswith(prefixes) and layer.weights:
            layer.trainable = False
            frozen += 1
    return frozen


def copy_encoder_weights(source, target, adapters="keep"):
    """Copies a pre-trained encoder's weights into a downstream encoder built by :func:`make_encoder`.

    Args:
        source, target: the pre-trained and the new encoder.
        adapters: ``"keep"``: every weight, the 1x1 adapter's included (both have one, or neither);
            ``"random"``: the backbone's only, the target's adapter keeps its random start;
            ``"drop"``: the target has no adapter and reads the input's channels directly: the
            backbone's weights but its first convolution's, which keeps its random start (it reads
            another number of channels).

    Raises:
        ValueError: the two do not fit (the message says how).
    """
    src_adapter, src_net = encoder_parts(source)
    dst_adapter, dst_net = encoder_parts(target)
    if adapters == "keep":
        target.set_weights(source.get_weights())
        return
    if src_adapter is None:
        raise ValueError(f"adapters {adapters!r} needs a pre-trained encoder with a 1x1 adapter; it has none")
    if adapters == "random":
        dst_net.set_weights(src_net.get_weights())
        return
    if adapters != "drop":
        raise ValueError(f"`adapters` must be keep, random or drop. Received: adapters={adapters!r}")
    src, dst = src_net.get_weights(), dst_net.weights
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} weights to copy into {len(dst)}")
    for value, variable in zip(src[1:], dst[1:]):  # the first is the input convolution's kernel
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"weight {variable.path} is {tuple(variable.shape)}, the pre-trained one {value.shape}")
        variable.assign(value)


#: every encoder :func:`make_encoder` builds: the ResNets, then the Swins
ENCODERS = (*BACKBONES, *SWINS)


def is_encoder(backbone):
    """Whether `backbone` names an encoder :func:`make_encoder` builds (a ResNet or a Swin)."""
    return backbone in ENCODERS
