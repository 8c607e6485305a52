"""Image augmentations for the methods whose two views come from one image (SimCLR on RGB, MoCo fusion).

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
    out = tf.image.crop_and_resize(images, boxes, tf.range(shape[0]), shape[1:3], method="bilinear")
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


def random_flip(images, seed, p=0.5):
    """Mirrors each image left-right with probability `p`."""
    flip = _uniform(seed, tf.shape(images)[0], 0.0, 1.0) < p
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def grey(images):
    """Luma of RGB images, ``[B, H, W, 1]``."""
    return tf.reduce_sum(images * tf.constant(GREY, images.dtype), axis=-1, keepdims=True)


def _per_sample(factor):
    return factor[:, None, None, None]


def adjust_brightness(images, factor):
    """Multiplies by a per-image `factor` (torchvision's brightness)."""
    return images * _per_sample(factor)


def adjust_contrast(images, factor):
    """Moves each image away from (factor > 1) or towards its mean luma (RGB) or mean value (other channels)."""
    level = grey(images) if images.shape[-1] == 3 else tf.reduce_mean(images, axis=-1, keepdims=True)
    mean = tf.reduce_mean(level, axis=[1, 2, 3], keepdims=True)
    return mean + (images - mean) * _per_sample(factor)


def adjust_saturation(images, factor):
    """Blends each RGB image with its grey version: 0 grey, 1 unchanged."""
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
