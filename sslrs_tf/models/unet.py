"""UNet pieces for land-cover segmentation, written here because keras-hub has no UNet.

* :func:`unet` — the supervised UNet baseline (64-128-256-512-512) on any channel count;
* :func:`pyramid_decoder` — a UNet-style decoder over encoders' ``P2``-``P5`` feature
  maps (strides 4-32), fusing several encoders by concatenation at each scale.
"""

import keras

from sslrs_tf.models.batch_norm import fuse_batch_norm

WIDTHS = (64, 128, 256, 512, 512)


def conv_block(x, filters, name):
    """[3x3 conv -> BatchNorm -> ReLU] x 2."""
    for i in (1, 2):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def unet(in_channels, num_classes, widths=WIDTHS, name="unet"):
    """The UNet baseline: `len(widths)` levels, max-pool down, bilinear up + skip concatenation.

    Args:
        in_channels: input channels (15 for S1+S2 stacked).
        num_classes: output classes (per-pixel logits).
        widths: filters per level, top to bottom (the baseline's 64-128-256-512-512).

    Returns:
        A functional model ``[B, H, W, in_channels] -> [B, H, W, num_classes]`` logits; H and W
        must be divisible by ``2 ** (len(widths) - 1)``.

    Example:
    >>> unet(15, 8)(np.zeros((1, 64, 64, 15))).shape
    TensorShape([1, 64, 64, 8])
    """
    if len(widths) < 2:
        raise ValueError(f"`widths` must have at least 2 levels. Received: widths={widths!r}")
    inputs = keras.Input((None, None, in_channels), name="image")
    x, skips = inputs, []
    for level, filters in enumerate(widths):
        if level:
            x = keras.layers.MaxPooling2D(name=f"down{level}_pool")(x)
        x = conv_block(x, filters, f"down{level}")
        skips.append(x)
    for level in range(len(widths) - 2, -1, -1):
        x = keras.layers.UpSampling2D(interpolation="bilinear", name=f"up{level}_resize")(x)
        x = keras.layers.Concatenate(name=f"up{level}_skip")([x, skips[level]])
        x = conv_block(x, widths[level], f"up{level}")
    logits = keras.layers.Conv2D(num_classes, 1, name="classes")(x)
    return fuse_batch_norm(keras.Model(inputs, logits, name=name))


def pyramid_decoder(channels, num_classes, widths=(256, 128, 64, 32), name="decoder"):
    """A UNet-style decoder over the ``P2``-``P5`` maps of one or several encoders.

    At each scale the encoders' maps are concatenated (the fusion of late-fusion
    models); from ``P5`` the decoder goes up by 2 and merges ``P4``, ``P3``, ``P2``,
    then up by 4 to the input resolution, and a 1x1 convolution gives the classes.

    Args:
        channels: ``{encoder name: {"P2": c2, ..., "P5": c5}}`` channel counts of the maps.
        num_classes: output classes.
        widths: filters after merging P4, P3, P2, and at full resolution.

    Returns:
        A functional model from ``{encoder name: {"P2": ..., "P5": ...}}`` to
        ``[B, 4 * H2, 4 * W2, num_classes]`` logits.
    """
    inputs = {e: {p: keras.Input((None, None, c), name=f"{e}_{p}") for p, c in maps.items()}
              for e, maps in channels.items()}

    def level(p):
        maps = [inputs[e][p] for e in inputs]
        return maps[0] if len(maps) == 1 else keras.layers.Concatenate(name=f"fuse_{p}")(maps)

    x = level("P5")
    for p, filters in zip(("P4", "P3", "P2"), widths[:3], strict=True):
        x = keras.layers.UpSampling2D(interpolation="bilinear", name=f"{p}_resize")(x)
        x = keras.layers.Concatenate(name=f"{p}_skip")([x, level(p)])
        x = conv_block(x, filters, p)
    x = keras.layers.UpSampling2D(4, interpolation="bilinear", name="full_resize")(x)
    x = conv_block(x, widths[3], "full")
    logits = keras.layers.Conv2D(num_classes, 1, name="classes")(x)
    return fuse_batch_norm(keras.Model(inputs, logits, name=name))
