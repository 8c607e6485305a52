"""UNet pieces for land-cover segmentation, written here because keras-hub has no UNet.

* :func:`unet` — the supervised UNet baseline (64-128-256-512-512) on any channel count;
* :func:`pyramid_decoder` — a UNet-style decoder over encoders' multi-scale feature
  maps (a ResNet's ``P2``-``P5``, MMA's VGG's ``P0``-``P3``), fusing several encoders by
  concatenation at each scale.
"""

import keras


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
    return keras.Model(inputs, logits, name=name)


def pyramid_decoder(channels, num_classes, widths=(256, 128, 64, 32), name="decoder"):
    """A UNet-style decoder over the multi-scale maps of one or several encoders.

    The maps are named ``Pk`` for stride ``2**k`` (a ResNet's ``P2``-``P5``, MMA's VGG's
    ``P0``-``P3``). At each scale the encoders' maps are concatenated (the fusion of
    late-fusion models); from the deepest map the decoder goes up to the next scale,
    merges its maps, and so on; then up to the input resolution (x4 from a ResNet's
    ``P2``, nothing from a ``P0``), and a 1x1 convolution gives the classes.

    Args:
        channels: ``{encoder name: {"P2": c2, ..., "P5": c5}}`` channel counts of the maps; every
            encoder has the same levels.
        num_classes: output classes.
        widths: filters after each merge, deepest first, and at full resolution: one more than
            the levels below the deepest (4 for 4 levels).

    Returns:
        A functional model from ``{encoder name: {level: map}}`` to ``[B, H, W, num_classes]`` logits
        at the input resolution.
    """
    names = [set(maps) for maps in channels.values()]
    if not names or any(n != names[0] for n in names) or not all(p[:1] == "P" and p[1:].isdigit() for p in names[0]):
        raise ValueError(f"`channels` must give every encoder the same levels P<k>. Received: channels={channels}")
    levels = sorted(names[0], key=lambda p: -int(p[1:]))
    if len(widths) != len(levels):
        raise ValueError(f"`widths` must have {len(levels)} entries for levels {levels}. Received: widths={list(widths)}")
    inputs = {e: {p: keras.Input((None, None, c), name=f"{e}_{p}") for p, c in maps.items()}
              for e, maps in channels.items()}

    def level(p):
        maps = [inputs[e][p] for e in inputs]
        return maps[0] if len(maps) == 1 else keras.layers.Concatenate(name=f"fuse_{p}")(maps)

    x = level(levels[0])
    for deeper, p, filters in zip(levels, levels[1:], widths[:-1]):
        factor = 2 ** (int(deeper[1:]) - int(p[1:]))
        x = keras.layers.UpSampling2D(factor, interpolation="bilinear", name=f"{p}_resize")(x)
        x = keras.layers.Concatenate(name=f"{p}_skip")([x, level(p)])
        x = conv_block(x, filters, p)
    finest = int(levels[-1][1:])
    if finest:
        x = keras.layers.UpSampling2D(2**finest, interpolation="bilinear", name="full_resize")(x)
    x = conv_block(x, widths[-1], "full")
    logits = keras.layers.Conv2D(num_classes, 1, name="classes")(x)
    return keras.Model(inputs, logits, name=name)
