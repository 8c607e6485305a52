"""The VGG-style encoder of MMA (multi-modal alignment, after Windsor et al. 2021; ISPRS 2022 baseline).

Four blocks of ``[conv 3x3 -> BatchNorm -> ReLU] x 2`` with 64, 128, 256 and E channels,
2x2 max-pooling between blocks (output stride 8). Written here because no Keras
library builds it: ``keras.applications.VGG16`` has other widths, three convs in
its late blocks, no BatchNorm, and pools after the last block.
"""

import keras

from sslrs_tf.models.batch_norm import synchronize_batch_norm


def vgg_encoder(in_channels, widths=(64, 128, 256, 256), sync_bn=True, name=None):
    """A VGG-style encoder for `in_channels` input channels.

    Args:
        in_channels: input channels (2 for S1, 13 for S2).
        widths: channels of the four blocks (the last is the embedding width E).
        sync_bn: batch statistics over all replicas under a distribution strategy.
        name: the model's name.

    Returns:
        A functional ``keras.Model`` from ``[B, H, W, in_channels]`` to a dict: the four
        blocks' outputs ``P0`` ... ``P3`` (strides 1, 2, 4, 8; ``P3`` ``[B, H/8, W/8, E]`` is
        the aligned feature map MMA compares, the others are a segmentation decoder's skips)
        and ``pooled`` ``[B, E]`` (the global average of ``P3``, for classification heads).

    Example:
    >>> encoder = vgg_encoder(2)
    >>> encoder(np.zeros((4, 128, 128, 2)))["P3"].shape
    TensorShape([4, 16, 16, 256])
    """
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"`in_channels` must be a positive integer. Received: in_channels={in_channels!r}")
    if len(widths) != 4:
        raise ValueError(f"`widths` must have 4 entries. Received: widths={list(widths)}")
    name = name or "vgg"
    inputs = keras.Input((None, None, in_channels), name="image")
    x, maps = inputs, {}
    for block, width in enumerate(widths, 1):
        if block > 1:
            x = keras.layers.MaxPooling2D(2, name=f"{name}_pool{block - 1}")(x)
        for conv in (1, 2):
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_b{block}_conv{conv}")(x)
            x = keras.layers.BatchNormalization(synchronized=sync_bn, name=f"{name}_b{block}_bn{conv}")(x)
            x = keras.layers.ReLU(name=f"{name}_b{block}_relu{conv}")(x)
        maps[f"P{block - 1}"] = x
    pooled = keras.layers.GlobalAveragePooling2D(name=f"{name}_pooled")(x)
    model = keras.Model(inputs, {**maps, "pooled": pooled}, name=name)
    return synchronize_batch_norm(model) if sync_bn else model
