"""Image augmentations for the methods whose two views come from one image (SimCLR on RGB, MoCo's views).

Batched tensor ops meant to run inside ``train_step`` on the accelerator (SPEC: the
input pipeline then only decodes and crops). Every random draw is stateless and
comes from an explicit ``seed`` (a ``[2]`` int tensor), which the methods derive
from the optimizer's step and the replica: a resumed run draws the same views as an
uninterrupted one, and replicas draw different ones.

The SimCLR recipe (Chen et al. 2020, as torchvision composes it): random resized
crop (area 0.08-1 of the image, aspect 3/4-4/3), horizontal flip, colour jitter
(brightness, contrast, saturation 0.8 and hue 0.2 at strength 1, applied with
probability 0.8, in this fixed order rather than a random one), grey with
probability 0.2, Gaussian blur with probability 0.5 (sigma 0.1-2, kernel a tenth
of the side). Colour operations need RGB; :func:`augment` skips saturation, hue and
grey for other channel counts (multispectral stacks keep brightness and contrast).
Values are reflectances scaled to about [0, 1]; nothing is wrapped to 8 bits.

The SEN12MS MoCo work's views (:func:`moco_view`, by the names of :data:`MOCO_AUGMENTATIONS`)
are built from the same operations plus a vertical flip and an elastic transformation.
"""

import math

import tensorflow as tf

#: torchvision's luma weights for R, G, B (ITU-R 601)
GREY = (0.299, 0.587, 0.114)


def _seeds(seed, n):
    """`n` independent stateless seeds from one."""
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, "int64"), n), axis=0)


def _uniform(seed, batch, low, high):
    return tf.random.stateless_uniform([batch], seed, low, high)


def crop_boxes(seed, batch, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """``[batch, 4]`` normalised boxes ``(y0, x0, y1, x1)``: area a share in `scale`, aspect log-uniform in `ratio`.

    torchvision retries a draw that does not fit the image; here height and width
    are capped at the image's instead (one draw, no loop).
    """
    s = _seeds(seed, 4)
    area = _uniform(s[0], batch, *scale)
    aspect = tf.exp(_uniform(s[1], batch, math.log(ratio[0]), math.log(ratio[1])))
    h = tf.minimum(tf.sqrt(area / aspect), 1.0)
    w = tf.minimum(tf.sqrt(area * aspect), 1.0)
    y0 = _uniform(s[2], batch, 0.0, 1.0) * (1.0 - h)
    x0 = _uniform(s[3], batch, 0.0, 1.0) * (1.0 - w)
    return tf.stack([y0, x0, y0 + h, x0 + w], axis=1)


def random_resized_crop(images, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), xla=False):
    """Each image's random box (see :func:`crop_boxes`) resized bilinearly to the input size.

    `xla`: for a step compiled with XLA (:func:`resized_crops`); else ``tf.image.crop_and_resize``,
    the same sampling with a kernel of its own (cheaper than two matrix products where it runs).
    """
    shape = tf.shape(images)
    boxes = crop_boxes(seed, shape[0], scale, ratio)
    if xla:
        return resized_crops(images, boxes)
    # The static side when known, so that the output keeps it (later ops size kernels from it).
    static = tf.TensorShape(images.shape)[1:3]
    size = static if static.is_fully_defined() else shape[1:3]
    out = tf.image.crop_and_resize(images, boxes, tf.range(shape[0]), size, method="bilinear")
    return tf.cast(out, images.dtype)


def resized_crops(images, boxes):
    """Each image's box ``(y0, x0, y1, x1)`` (normalised) resized bilinearly to the input size.

    The sampling of ``tf.image.crop_and_resize`` (box corners on the first and last pixel
    centres), written as two matrix products per image (rows, then columns) because XLA has no
    kernel for ``CropAndResize``: a TPU, or a step compiled with ``jit_compile``, could not run
    it. The images' height and width must be known when the step is traced.
    """
    rows = _bilinear_weights(boxes[:, 0], boxes[:, 2], images.shape[1])
    cols = _bilinear_weights(boxes[:, 1], boxes[:, 3], images.shape[2])
    x = tf.cast(images, tf.float32)
    out = tf.einsum("bjw,biwc->bijc", cols, tf.einsum("bih,bhwc->biwc", rows, x))
    return tf.cast(out, images.dtype)


def _bilinear_weights(start, end, size):
    """``[B, size, size]``: row i holds the weights of the input pixels that output pixel i of each box
    interpolates (at most two non-zero, summing to 1), as crop_and_resize samples from `start` to `end`."""
    if size is None:
        raise ValueError("resized_crops needs the images' height and width at trace time. Received: None")
    position = start[:, None] * (size - 1) + tf.range(size, dtype=tf.float32)[None, :] * (
        (end - start) * (size - 1) / max(size - 1, 1))[:, None]
    return tf.maximum(0.0, 1.0 - tf.abs(position[:, :, None] - tf.range(size, dtype=tf.float32)[None, None, :]))


def random_flip(images, seed, p=0.5, axis=2):
    """Mirrors each image with probability `p`: left-right (`axis` 2) or upside down (`axis` 1)."""
    flip = _uniform(seed, tf.shape(images)[0], 0.0, 1.0) < p
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[axis]), images)


def grey(images):
    """Luma of RGB images, ``[B, H, W, 1]``; of other channel counts, the mean over the channels."""
    if images.shape[-1] != 3:
        return tf.reduce_mean(images, axis=-1, keepdims=True)
    return tf.reduce_sum(images * tf.constant(GREY, images.dtype), axis=-1, keepdims=True)


def _per_sample(factor):
    return factor[:, None, None, None]


def adjust_brightness(images, factor):
    """Multiplies by a per-image `factor` (torchvision's brightness)."""
    return images * _per_sample(factor)


def adjust_contrast(images, factor):
    """Moves each image away from (factor > 1) or towards its mean luma (RGB) or mean value (other channels)."""
    mean = tf.reduce_mean(grey(images), axis=[1, 2, 3], keepdims=True)
    return mean + (images - mean) * _per_sample(factor)


def adjust_saturation(images, factor):
    """Blends each image with its grey version (:func:`grey`): 0 grey, 1 unchanged."""
    g = grey(images)
    return g + (images - g) * _per_sample(factor)


def adjust_hue(images, delta):
    """Rotates each RGB image's hue by `delta` turns (through HSV, on values clipped to [0, 1] as torchvision does)."""
    hsv = tf.image.rgb_to_hsv(tf.clip_by_value(images, 0.0, 1.0))
    h = tf.math.floormod(hsv[..., 0] + delta[:, None, None], 1.0)
    return tf.image.hsv_to_rgb(tf.stack([h, hsv[..., 1], hsv[..., 2]], axis=-1))


def gaussian_kernels(sigma, size):
    """``[B, size]`` normalised 1-D Gaussian kernels, one per sigma."""
    x = tf.range(size, dtype=sigma.dtype) - (size - 1) / 2
    k = tf.exp(-(x[None, :] ** 2) / (2.0 * sigma[:, None] ** 2))
    return k / tf.reduce_sum(k, axis=1, keepdims=True)


def gaussian_blur(images, sigma):
    """Blurs each image with its own `sigma` (separable, kernel a tenth of the side, odd; reflected borders).

    One depthwise convolution for the whole batch: the images are folded into
    the channels, so each gets its own kernel without a loop.
    """
    b, h, w, c = tf.unstack(tf.shape(images))
    size = max(3, (images.shape[1] // 10) // 2 * 2 + 1)
    k = gaussian_kernels(tf.cast(sigma, images.dtype), size)  # [B, size]
    k = tf.repeat(k, c, axis=0)  # one kernel per (image, channel)
    folded = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, h, w, b * c])
    pad = size // 2
    folded = tf.pad(folded, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    kt = tf.transpose(k)  # [size, B*C]
    folded = tf.nn.depthwise_conv2d(folded, kt[:, None, :, None], [1, 1, 1, 1], "VALID")
    folded = tf.nn.depthwise_conv2d(folded, kt[None, :, :, None], [1, 1, 1, 1], "VALID")
    return tf.transpose(tf.reshape(folded, [h, w, b, c]), [2, 0, 1, 3])


def augment(images, seed, strength=1.0, crop_scale=(0.08, 1.0), blur=None, xla=False):
    """One SimCLR view of each image (see the module docstring); float images ``[B, H, W, C]``.

    Args:
        images: the batch.
        seed: ``[2]`` ints; the same seed gives the same view.
        strength: colour-jitter strength s (brightness, contrast, saturation 0.8 s, hue 0.2 s).
        crop_scale: the range of the crop's area share.
        blur: apply the Gaussian blur (SimCLR's ImageNet recipe); default: for sides of 64 px
            and more (SimCLR leaves it out for 32 px CIFAR images, where the kernel is 3 px).
        xla: the step is compiled with XLA (see :func:`random_resized_crop`).
    """
    images = tf.cast(images, "float32")
    batch = tf.shape(images)[0]
    s = _seeds(seed, 10)
    rgb = images.shape[-1] == 3
    x = random_flip(random_resized_crop(images, s[0], crop_scale, xla=xla), s[1])
    jitter = _uniform(s[2], batch, 0.0, 1.0) < 0.8
    j = 0.8 * strength
    y = adjust_contrast(adjust_brightness(x, _uniform(s[3], batch, 1 - j, 1 + j)), _uniform(s[4], batch, 1 - j, 1 + j))
    if rgb:
        y = adjust_saturation(y, _uniform(s[5], batch, max(0.0, 1 - j), 1 + j))
        y = adjust_hue(y, _uniform(s[6], batch, -0.2 * strength, 0.2 * strength))
    x = tf.where(jitter[:, None, None, None], y, x)
    if rgb:
        to_grey = _uniform(s[7], batch, 0.0, 1.0) < 0.2
        x = tf.where(to_grey[:, None, None, None], tf.repeat(grey(x), 3, axis=-1), x)
    if blur is None:
        blur = images.shape[1] is not None and images.shape[1] >= 64
    if blur:
        blurred = gaussian_blur(x, _uniform(s[8], batch, 0.1, 2.0))
        x = tf.where((_uniform(s[9], batch, 0.0, 1.0) < 0.5)[:, None, None, None], blurred, x)
    return x


def smoothing_kernel(sigma, size):
    """The 1-D Gaussian of standard deviation `sigma` px on ``2 * radius + 1`` taps, normalised; the radius is
    4 sigma, at most ``size - 1`` (what reflected borders of an image of side `size` allow)."""
    radius = max(1, min(int(4 * sigma + 0.5), size - 1))
    t = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-(t ** 2) / (2.0 * sigma ** 2))
    return k / tf.reduce_sum(k)


def elastic_displacement(seed, batch, height, width, alpha=25.0, sigma=5.0):
    """``[batch, height, width, 2]`` displacements in pixels (rows, columns) of an elastic transformation.

    Simard et al. 2003: uniform noise in [-1, 1] at every pixel, smoothed by a Gaussian of
    `sigma` px (separable, reflected borders, see :func:`smoothing_kernel`), times `alpha` px.
    """
    noise = tf.random.stateless_uniform([batch, height, width, 2], seed, -1.0, 1.0)
    k = smoothing_kernel(sigma, min(height, width))
    pad = (k.shape[0] - 1) // 2
    x = tf.pad(noise, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    kernel = tf.tile(k[:, None, None, None], [1, 1, 2, 1])
    x = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")
    x = tf.nn.depthwise_conv2d(x, tf.transpose(kernel, [1, 0, 2, 3]), [1, 1, 1, 1], "VALID")
    return alpha * x


def warp(images, displacement):
    """Each output pixel ``(i, j)`` sampled bilinearly at ``(i + dy, j + dx)`` of its image, coordinates clamped
    to the image (borders repeat). `displacement`: ``[B, H, W, 2]`` in pixels, rows then columns.

    Written out with gathers (no TF op samples at arbitrary points, and tensorflow-addons'
    ``dense_image_warp`` does not import with Keras 3); XLA compiles it.
    """
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    rows = tf.cast(tf.range(h), tf.float32)[None, :, None] + displacement[..., 0]
    cols = tf.cast(tf.range(w), tf.float32)[None, None, :] + displacement[..., 1]
    rows = tf.clip_by_value(rows, 0.0, tf.cast(h - 1, tf.float32))
    cols = tf.clip_by_value(cols, 0.0, tf.cast(w - 1, tf.float32))
    r0, c0 = tf.floor(rows), tf.floor(cols)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = tf.cast(r0, tf.int32), tf.cast(c0, tf.int32)
    r1, c1 = tf.minimum(r0 + 1, h - 1), tf.minimum(c0 + 1, w - 1)

    def at(r, c):
        return tf.gather_nd(images, tf.stack([r, c], axis=-1), batch_dims=1)

    top = at(r0, c0) * (1 - fc) + at(r0, c1) * fc
    bottom = at(r1, c0) * (1 - fc) + at(r1, c1) * fc
    return top * (1 - fr) + bottom * fr


def elastic_transform(images, seed, alpha=25.0, sigma=5.0):
    """Each image warped by its own :func:`elastic_displacement` (`alpha`, `sigma` in pixels)."""
    shape = tf.shape(images)
    displacement = elastic_displacement(seed, shape[0], images.shape[1], images.shape[2], alpha, sigma)
    return warp(images, displacement)


def _apply_with_probability(seed, p, changed, images):
    """`changed` for a share `p` of the images (drawn per image from `seed`), `images` for the rest."""
    pick = _uniform(seed, tf.shape(images)[0], 0.0, 1.0) < p
    return tf.where(pick[:, None, None, None], changed, images)


#: the views :func:`moco_view` makes, by name (``model.augmentation``)
MOCO_AUGMENTATIONS = {
    "none": "the images as they are",
    "flips_blur_elastic": "horizontal and vertical flip (each p 0.5), Gaussian blur (p 0.5, sigma 0.1-2 px), "
                          "elastic transformation (p 0.5, alpha 25 px, sigma 5 px)",
    "set1": "random resized crop (area 0.2-1)",
    "set2": "set1, then Gaussian blur (p 0.5, sigma 0.1-2 px)",
    "set3": "set1, colour jitter (p 0.8: brightness, contrast, saturation 0.4, hue 0.1 on RGB only), "
            "greyscale (p 0.2: every channel their mean unless RGB), then Gaussian blur (p 0.5)",
}


def moco_view(images, seed, augmentation, xla=False):
    """One view of each image as the SEN12MS MoCo work augments (see :data:`MOCO_AUGMENTATIONS`).

    ``flips_blur_elastic`` are the augmentations the work lists for MoCo-v2 on one sensor;
    ``set1``-``set3`` its three augmentation sets (the crop's area 0.2-1 and the jitter
    strengths are MoCo-v2's). Probabilities the work does not state (elastic: 0.5) are
    this library's choice. Blur kernels are a tenth of the side, as in :func:`augment`.

    Args:
        images: float ``[B, H, W, C]``, any channel count (brightness scales a whole image; contrast,
            saturation and greyscale use the mean over its channels unless it is RGB).
        seed: ``[2]`` ints; the same seed gives the same view.
        augmentation: a name of :data:`MOCO_AUGMENTATIONS`.
        xla: the step is compiled with XLA (see :func:`random_resized_crop`).
    """
    if augmentation not in MOCO_AUGMENTATIONS:
        raise ValueError(f"`augmentation` must be one of {', '.join(MOCO_AUGMENTATIONS)}. "
                         f"Received: augmentation={augmentation!r}")
    x = tf.cast(images, "float32")
    if augmentation == "none":
        return x
    batch = tf.shape(x)[0]
    s = _seeds(seed, 12)
    if augmentation == "flips_blur_elastic":
        x = random_flip(random_flip(x, s[0]), s[1], axis=1)
        x = _apply_with_probability(s[2], 0.5, gaussian_blur(x, _uniform(s[3], batch, 0.1, 2.0)), x)
        return _apply_with_probability(s[4], 0.5, elastic_transform(x, s[5]), x)
    x = random_resized_crop(x, s[0], (0.2, 1.0), xla=xla)
    if augmentation == "set3":
        y = adjust_contrast(adjust_brightness(x, _uniform(s[6], batch, 0.6, 1.4)), _uniform(s[7], batch, 0.6, 1.4))
        y = adjust_saturation(y, _uniform(s[8], batch, 0.6, 1.4))
        if x.shape[-1] == 3:
            y = adjust_hue(y, _uniform(s[9], batch, -0.1, 0.1))
        x = _apply_with_probability(s[10], 0.8, y, x)
        x = _apply_with_probability(s[11], 0.2, tf.broadcast_to(grey(x), tf.shape(x)), x)
    if augmentation in ("set2", "set3"):
        x = _apply_with_probability(s[2], 0.5, gaussian_blur(x, _uniform(s[3], batch, 0.1, 2.0)), x)
    return x
