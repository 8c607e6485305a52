"""The in-step augmentations against NumPy references, eagerly and inside tf.data."""

import numpy as np
import pytest
import tensorflow as tf

from sslrs_tf.data import augment as aug
from tests.helpers import eager_and_in_tf_data

SEED = tf.constant([3, 7], tf.int64)


def np_bilinear_crop(image, box, size):
    """tf.image.crop_and_resize's sampling, one pixel at a time."""
    h, w, _ = image.shape
    y0, x0, y1, x1 = box
    out = np.zeros((size, size, image.shape[-1]))
    for i in range(size):
        for j in range(size):
            y = y0 * (h - 1) + i * (y1 - y0) * (h - 1) / (size - 1)
            x = x0 * (w - 1) + j * (x1 - x0) * (w - 1) / (size - 1)
            ya, xa = int(np.floor(y)), int(np.floor(x))
            yb, xb = min(ya + 1, h - 1), min(xa + 1, w - 1)
            dy, dx = y - ya, x - xa
            out[i, j] = ((1 - dy) * (1 - dx) * image[ya, xa] + (1 - dy) * dx * image[ya, xb]
                         + dy * (1 - dx) * image[yb, xa] + dy * dx * image[yb, xb])
    return out


def test_crop_boxes_respect_area_and_aspect_and_crops_match_numpy():
    boxes = aug.crop_boxes(SEED, 200, scale=(0.2, 1.0)).numpy()
    h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes >= 0).all() and (boxes <= 1 + 1e-6).all()
    # Area share in [0.2, 1] unless a side was capped at the image (then smaller).
    assert ((h * w <= 1 + 1e-6) & ((h * w >= 0.2 - 1e-6) | (h >= 1 - 1e-6) | (w >= 1 - 1e-6))).all()
    uncapped = (h < 1 - 1e-6) & (w < 1 - 1e-6)
    assert ((w / h)[uncapped] >= 3 / 4 - 1e-5).all() and ((w / h)[uncapped] <= 4 / 3 + 1e-5).all()
    images = np.random.default_rng(0).random((3, 12, 12, 2)).astype(np.float32)
    expected_boxes = aug.crop_boxes(SEED, 3).numpy()
    for got in eager_and_in_tf_data(lambda x: aug.random_resized_crop(x, SEED), images):
        for i in range(3):
            np.testing.assert_allclose(got[i], np_bilinear_crop(images[i], expected_boxes[i], 12), atol=1e-5)


def test_colour_operations_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.random((2, 4, 4, 3)).astype(np.float32)
    f = np.array([0.5, 1.5], np.float32)
    luma = (x * [0.299, 0.587, 0.114]).sum(-1, keepdims=True)
    np.testing.assert_allclose(aug.grey(x), luma, rtol=1e-5)
    np.testing.assert_allclose(aug.adjust_brightness(x, f), x * f[:, None, None, None], rtol=1e-6)
    mean = luma.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(aug.adjust_contrast(x, f), mean + (x - mean) * f[:, None, None, None], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(aug.adjust_saturation(x, f), luma + (x - luma) * f[:, None, None, None], rtol=1e-5,
                               atol=1e-6)
    # A hue turn of 1/3 maps pure red to pure green; a whole turn changes nothing.
    red = np.zeros((1, 1, 1, 3), np.float32)
    red[..., 0] = 1
    np.testing.assert_allclose(aug.adjust_hue(red, np.array([1 / 3], np.float32)), [[[[0, 1, 0]]]], atol=1e-5)
    np.testing.assert_allclose(aug.adjust_hue(x, np.array([1.0, 0.0], np.float32)), x, atol=1e-5)


def test_each_image_is_blurred_with_its_own_gaussian():
    rng = np.random.default_rng(2)
    x = rng.random((2, 30, 30, 2)).astype(np.float32)
    sigma = np.array([0.5, 2.0], np.float32)
    size = 3  # a tenth of 30, odd
    expected = np.zeros_like(x, dtype=np.float64)
    for b in range(2):
        t = np.arange(size) - size // 2
        k = np.exp(-t ** 2 / (2 * sigma[b] ** 2))
        k /= k.sum()
        padded = np.pad(x[b], ((1, 1), (1, 1), (0, 0)), mode="reflect")
        for i in range(30):
            for j in range(30):
                expected[b, i, j] = np.einsum("a,b,abc->c", k, k, padded[i:i + size, j:j + size])
    for got in eager_and_in_tf_data(aug.gaussian_blur, x, sigma):
        np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("channels", [3, 12])
def test_views_are_seeded_distinct_and_keep_shape(channels):
    x = np.random.default_rng(3).random((4, 32, 32, channels)).astype(np.float32)
    a, b = eager_and_in_tf_data(lambda t: aug.augment(t, SEED), x)
    np.testing.assert_allclose(a, b, atol=1e-6)  # the same seed: the same view, eagerly and in tf.data
    other = aug.augment(x, tf.constant([3, 8], tf.int64)).numpy()
    assert a.shape == x.shape and np.isfinite(a).all() and not np.allclose(a, other)


def test_crops_compile_with_xla_and_match_numpy():
    # As a TPU or a jit_compile step runs them (crop and resize is two matrix products for this reason).
    images = np.random.default_rng(2).random((3, 16, 16, 4)).astype(np.float32)
    boxes = aug.crop_boxes(SEED, 3).numpy()
    compiled = tf.function(aug.resized_crops, jit_compile=True)(images, boxes).numpy()
    for i in range(3):
        np.testing.assert_allclose(compiled[i], np_bilinear_crop(images[i], boxes[i], 16), atol=1e-5)


@pytest.mark.parametrize("channels", [3, 12])
def test_a_view_compiles_with_xla_and_is_a_function_of_its_seed(channels):
    # XLA draws other random numbers from a seed than TensorFlow's kernels (both are deterministic), so a run
    # compiled with XLA sees other views than one without; within either, the seed decides. 64 px: with blur.
    images = np.random.default_rng(2).random((2, 64, 64, channels)).astype(np.float32)
    view = tf.function(lambda x, seed: aug.augment(x, seed, xla=True), jit_compile=True)
    first, again = view(images, SEED).numpy(), view(images, SEED).numpy()
    other = view(images, SEED + 1).numpy()
    np.testing.assert_array_equal(first, again)
    assert first.shape == images.shape and np.isfinite(first).all() and not np.allclose(first, other, atol=1e-3)
    assert not np.allclose(first, aug.augment(images, SEED, xla=True).numpy(), atol=1e-3)  # the same ops, not XLA


def test_grey_and_saturation_of_multispectral_stacks_use_the_channel_mean():
    x = np.random.default_rng(4).random((2, 4, 4, 12)).astype(np.float32)
    f = np.array([0.0, 1.4], np.float32)
    mean = x.mean(-1, keepdims=True)
    np.testing.assert_allclose(aug.grey(x), mean, rtol=1e-5)
    np.testing.assert_allclose(aug.adjust_saturation(x, f), mean + (x - mean) * f[:, None, None, None], rtol=1e-5,
                               atol=1e-6)
    flipped, in_data = eager_and_in_tf_data(lambda t: aug.random_flip(t, SEED, p=1.0, axis=1), x)
    np.testing.assert_array_equal(flipped, x[:, ::-1])
    np.testing.assert_array_equal(in_data, x[:, ::-1])


def test_elastic_displacement_is_smoothed_noise_as_scipy_filters_it():
    from scipy import ndimage

    noise = tf.random.stateless_uniform([2, 20, 24, 2], SEED, -1.0, 1.0).numpy()
    sigma, alpha = 1.5, 7.0
    t = np.arange(-6, 7)  # radius 4 sigma = 6
    k = np.exp(-t ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    # TensorFlow's REFLECT padding (d c b | a b c d) is SciPy's "mirror" mode.
    expected = alpha * ndimage.correlate1d(ndimage.correlate1d(noise, k, axis=1, mode="mirror"), k, axis=2,
                                           mode="mirror")
    for got in eager_and_in_tf_data(lambda s: aug.elastic_displacement(s, 2, 20, 24, alpha, sigma), SEED):
        np.testing.assert_allclose(got, expected, atol=1e-5)
    # The radius shrinks to what a small image's borders can reflect.
    assert aug.smoothing_kernel(5.0, 8).shape == (15,)


def test_warp_samples_bilinearly_as_scipy_map_coordinates():
    from scipy import ndimage

    rng = np.random.default_rng(5)
    images = rng.random((2, 9, 11, 3)).astype(np.float32)
    displacement = rng.uniform(-4, 4, (2, 9, 11, 2)).astype(np.float32)
    rows = np.clip(np.arange(9)[None, :, None] + displacement[..., 0], 0, 8)
    cols = np.clip(np.arange(11)[None, None, :] + displacement[..., 1], 0, 10)
    expected = np.stack([np.stack([ndimage.map_coordinates(images[b, ..., c], [rows[b], cols[b]], order=1)
                                   for c in range(3)], -1) for b in range(2)])
    for got in eager_and_in_tf_data(aug.warp, images, displacement):
        np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(aug.warp(images, np.zeros_like(displacement)), images, atol=1e-6)


def test_moco_augmentation_sets_are_what_their_names_say():
    rng = np.random.default_rng(6)
    x = rng.random((48, 32, 32, 12)).astype(np.float32)
    seeds = tf.unstack(tf.random.experimental.stateless_split(SEED, 12), axis=0)
    np.testing.assert_array_equal(aug.moco_view(x, SEED, "none"), x)
    # set1: the random resized crop of 20-100 % of the area, nothing else.
    set1 = aug.moco_view(x, SEED, "set1").numpy()
    boxes = aug.crop_boxes(seeds[0], 48, scale=(0.2, 1.0)).numpy()
    for i in range(3):
        np.testing.assert_allclose(set1[i], np_bilinear_crop(x[i], boxes[i], 32), atol=1e-5)
    # set2: each crop of set1, blurred or not; blurring smooths (neighbouring pixels move closer).
    set2 = aug.moco_view(x, SEED, "set2").numpy()
    kept = np.isclose(set2, set1, atol=1e-6).all(axis=(1, 2, 3))
    roughness = lambda v: np.abs(np.diff(v, axis=1)).mean(axis=(1, 2, 3))  # noqa: E731
    assert 0.2 < kept.mean() < 0.8 and (roughness(set2)[~kept] < roughness(set1)[~kept]).all()
    # set3: some images grey (every channel their mean), none left exactly as set2 unless neither jittered nor grey.
    set3 = aug.moco_view(x, SEED, "set3").numpy()
    grey = np.isclose(set3, set3.mean(-1, keepdims=True), atol=1e-6).all(axis=(1, 2, 3))
    assert 0.02 < grey.mean() < 0.5
    # flips, blur and the elastic transformation keep the values' range; none of them crops.
    other = aug.moco_view(x, SEED, "flips_blur_elastic").numpy()
    assert other.min() >= 0 and other.max() <= 1 and not np.allclose(other, x)
    for name in aug.MOCO_AUGMENTATIONS:
        eager, in_data = eager_and_in_tf_data(lambda t, n=name: aug.moco_view(t, SEED, n), x[:4])
        np.testing.assert_allclose(eager, in_data, atol=1e-5)
    with pytest.raises(ValueError, match="Received: augmentation='set4'"):
        aug.moco_view(x, SEED, "set4")


@pytest.mark.parametrize("name", ["flips_blur_elastic", "set3"])
def test_moco_views_compile_with_xla(name):
    images = np.random.default_rng(7).random((4, 32, 32, 12)).astype(np.float32)
    view = tf.function(lambda x, seed: aug.moco_view(x, seed, name, xla=True), jit_compile=True)
    first, other = view(images, SEED).numpy(), view(images, SEED + 1).numpy()
    assert first.shape == images.shape and np.isfinite(first).all() and not np.allclose(first, other)
