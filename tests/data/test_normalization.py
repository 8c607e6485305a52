"""Normalisations against a plain NumPy reference, eagerly and inside tf.data."""

import numpy as np
import pytest

from sslrs_tf.data.bands import band_indices
from sslrs_tf.data.normalization import CLIP_RANGES, ZSCORE_STATS, Normalization
from tests.helpers import eager_and_in_tf_data


def numpy_reference(x, modality, method, bands):
    """`method` applied to raw `x` ([..., H, W, C]) in NumPy; the max methods divide by the maxima of `x`."""
    x = np.asarray(x, np.float64)
    low, high = CLIP_RANGES[modality]
    x = np.clip(np.where(np.isnan(x), low, x), low, high)
    if method == "per_sample_max":  # the research code: / (max of the crop + 1e-5), S1 and S2 alike
        x = x - low
        return x / (x.max(axis=(-3, -2), keepdims=True) + 1e-5)
    if method == "per_patch_max":  # / max, no epsilon; a zero max gives 0
        x = x - low
        peak = x.max(axis=(-3, -2), keepdims=True)
        return np.divide(x, peak, out=np.zeros_like(x), where=peak > 0)
    if method == "fixed":
        return x / 25 + 1 if modality == "s1" else x / 10000
    mean = np.array([ZSCORE_STATS[modality][b][0] for b in bands])
    std = np.array([ZSCORE_STATS[modality][b][1] for b in bands])
    return (x - mean) / std


def random_raw(rng, modality, shape):
    if modality == "s1":
        x = rng.uniform(-40, 30, shape).astype(np.float32)  # beyond both clip bounds
        x[rng.random(shape) < 0.05] = np.nan
        return x
    return rng.integers(0, 14000, shape).astype(np.uint16)


@pytest.mark.parametrize("method", ["per_sample_max", "per_patch_max", "zscore", "fixed"])
@pytest.mark.parametrize("modality, bands", [("s1", None), ("s2", "s2_10")])
@pytest.mark.parametrize("batched", [False, True])
def test_matches_numpy_reference(method, modality, bands, batched):
    rng = np.random.default_rng(0)
    channels = len(band_indices(modality, bands))
    shape = (3, 16, 16, channels) if batched else (16, 16, channels)
    raw = random_raw(rng, modality, shape)
    norm = Normalization(method)
    eager, graph = eager_and_in_tf_data(lambda x: norm(x, modality, bands), raw)
    from sslrs_tf.data.bands import resolve_bands

    expected = numpy_reference(raw, modality, method, resolve_bands(modality, bands))
    np.testing.assert_allclose(eager, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(graph, expected, rtol=1e-5, atol=1e-5)
    assert eager.dtype == np.float32 and np.isfinite(eager).all()


@pytest.mark.parametrize("method", ["per_sample_max", "per_patch_max"])
@pytest.mark.parametrize("shape", [(15, 15), (6, 10), (3, 24, 24), (2, 1, 7), (2, 2, 128, 128)])
def test_the_max_normalisations_match_numpy_at_any_size_and_with_unknown_shapes(method, shape):
    """They run over rows of as many pixels as divide the pixel count (64 of a 128 px crop, 4 of 6 x 10, 1 of
    15 x 15; one per row when the spatial shape is unknown while tracing): the same values every way."""
    import tensorflow as tf

    rng = np.random.default_rng(2)
    for modality, channels in (("s1", 2), ("s2", 13)):
        raw = random_raw(rng, modality, (*shape, channels))
        norm = Normalization(method)
        expected = numpy_reference(raw, modality, method, None)
        eager, graph = eager_and_in_tf_data(lambda x: norm(x, modality), raw)  # noqa: B023
        unknown = tf.function(lambda x: norm(x, modality),  # noqa: B023
                              input_signature=[tf.TensorSpec([None] * len(shape) + [channels], raw.dtype)])
        for out in (eager, graph, unknown(raw).numpy()):
            assert out.shape == raw.shape
            np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["per_sample_max", "per_patch_max"])
def test_max_scaling_of_a_flat_channel_is_zero_not_nan(method):
    flat = np.full((8, 8, 2), -30.0, np.float32)  # everything below the clip floor
    out = Normalization(method)(flat, "s1").numpy()
    assert (out == 0).all()
    out = Normalization(method)(np.zeros((8, 8, 13), np.uint16), "s2").numpy()
    assert (out == 0).all()


def test_fill_nan_false_keeps_nan_only_where_it_was():
    x = np.random.default_rng(1).uniform(-20, -5, (8, 8, 2)).astype(np.float32)
    x[2, 3, 0] = np.nan
    x[..., 1] = np.nan  # a whole channel of NaN
    out = Normalization("per_sample_max", fill_nan=False)(x, "s1").numpy()
    assert np.isnan(out[2, 3, 0]) and np.isnan(out[..., 1]).all()
    assert np.isnan(out).sum() == 1 + 64
    valid = np.delete(out[..., 0].ravel(), 2 * 8 + 3)
    assert np.isfinite(valid).all() and valid.max() == pytest.approx(1.0)


def test_zscore_without_published_statistics_is_refused_unless_given():
    with pytest.raises(ValueError, match="no statistics for s2 band.* B01, B09, B10"):
        Normalization("zscore")(np.zeros((4, 4, 13), np.uint16), "s2")
    stats = {"s2": {"B01": (1000.0, 500.0), "B09": (800.0, 400.0), "B10": (20.0, 10.0)}}
    out = Normalization("zscore", stats=stats)(np.full((4, 4, 13), 1000, np.uint16), "s2").numpy()
    assert out[0, 0, 0] == pytest.approx(0.0)


def test_config_round_trip_and_description_for_weights():
    norm = Normalization("zscore", fill_nan=False)
    assert Normalization.from_config(norm.get_config()) == norm
    assert Normalization.from_config("fixed") == Normalization("fixed")
    card = norm.describe("s2", "rgb")
    assert card["bands"] == ["B04", "B03", "B02"] and card["clip"] == [0.0, 10000.0]
    assert card["mean"][0] == ZSCORE_STATS["s2"]["B04"][0]
    with pytest.raises(ValueError, match="`method` must be one of"):
        Normalization("minmax")


def whole_patch_and_crop(modality):
    rng = np.random.default_rng(4)
    full = random_raw(rng, modality, (2, 20, 20, 2 if modality == "s1" else 13))
    # A darker crop: its maxima lie below the whole patch's, so the two normalisations differ.
    window = full[:, 5:15, 3:13]
    full[:, 5:15, 3:13] = np.minimum(window, -10 if modality == "s1" else 5000)
    return full, full[:, 5:15, 3:13]


@pytest.mark.parametrize("modality", ["s1", "s2"])
def test_per_sample_max_of_a_crop_divides_by_the_crop_maximum_plus_epsilon(modality):
    full, crop = whole_patch_and_crop(modality)
    low, high = CLIP_RANGES[modality]
    # The research code, in plain NumPy: clip, shift, divide by the crop's maximum + 1e-5.
    x = np.clip(np.nan_to_num(crop.astype(np.float64), nan=low), low, high) - low
    expected = x / (x.max(axis=(1, 2), keepdims=True) + 1e-5)
    eager, graph = eager_and_in_tf_data(lambda c: Normalization("per_sample_max")(c, modality), crop)
    np.testing.assert_allclose(eager, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(graph, expected, rtol=1e-6, atol=1e-7)
    if modality == "s1":
        # The epsilon: never quite 1. (In float32, as in the research code, 1e-5 is lost
        # against S2 maxima in the thousands.)
        assert eager.max() < 1
    # ... which is not the crop of the normalised whole patch.
    assert not np.allclose(eager, numpy_reference(full, modality, "per_patch_max", None)[:, 5:15, 3:13], atol=1e-3)


@pytest.mark.parametrize("modality", ["s1", "s2"])
def test_per_patch_max_with_the_stored_maxima_equals_the_crop_of_the_normalised_patch(modality):
    from sslrs_tf.data.normalization import raw_channel_max

    full, crop = whole_patch_and_crop(modality)
    low, high = CLIP_RANGES[modality]
    # The whole-patch computation in plain NumPy, then the crop.
    x = np.clip(np.nan_to_num(full.astype(np.float64), nan=low), low, high) - low
    expected = (x / x.max(axis=(1, 2), keepdims=True))[:, 5:15, 3:13]
    stored = raw_channel_max(full).numpy()  # what the builders store as s1_max / s2_max
    eager, graph = eager_and_in_tf_data(lambda c, m: Normalization("per_patch_max")(c, modality, raw_max=m),
                                        crop, stored)
    np.testing.assert_allclose(eager, expected, atol=1e-6)
    np.testing.assert_allclose(graph, expected, atol=1e-6)


def test_per_sample_max_refuses_whole_patch_maxima_and_cards_name_the_method():
    with pytest.raises(ValueError, match="raw_max .* belongs to per_patch_max"):
        Normalization("per_sample_max")(np.zeros((4, 4, 2), np.float32), "s1", raw_max=np.zeros(2, np.float32))
    assert Normalization("per_sample_max").describe("s1")["method"] == "per_sample_max"
    assert Normalization("per_patch_max").describe("s2")["method"] == "per_patch_max"
    assert Normalization.from_config("per_patch_max") == Normalization("per_patch_max")
