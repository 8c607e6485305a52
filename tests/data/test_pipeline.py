"""The input pipeline against NumPy references: alignment, normalisation, determinism, labels, fractions,
class balance."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from sslrs_tf.data import labels
from sslrs_tf.data.pipeline import make_dataset, training_size
from sslrs_tf.data.sources import SentinelSource, label_subset
from sslrs_tf.errors import UserError
from tests.data.test_labels import np_multi, np_single
from tests.data.test_normalization import numpy_reference

CROP = 24


def raw_by_id(builder, split):
    return {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}


def np_mask(raw):
    dfc10 = raw["dfc"]
    table = np.full(256, 255, np.uint8)
    table[[1, 2, 4, 5, 6, 7, 9, 10]] = np.arange(8)
    return table[dfc10]


def batches(ds, n=None):
    out = []
    for i, b in enumerate(ds):
        if n is not None and i >= n:
            break
        out.append(tf.nest.map_structure(lambda t: t.numpy(), b))
    return out


def find_offset(crop, full, normalise=None):
    """The (top, left) at which `crop` sits in `full`, by exhaustive search.

    `normalise`: applied to each window of `full` before comparing (`full` raw, `crop` normalised).
    """
    c = crop.shape[0]
    normalise = normalise or (lambda w: w)
    for top in range(full.shape[0] - c + 1):
        for left in range(full.shape[1] - c + 1):
            if np.allclose(normalise(full[top : top + c, left : left + c]), crop, atol=1e-6):
                return top, left
    raise AssertionError("crop not found in its patch")


def test_random_crops_are_aligned_across_s1_s2_and_mask_and_normalised_by_the_crop_maxima_like_numpy(built):
    raw = raw_by_id(built["dfc2020"], "validation")
    ds = make_dataset(built["dfc2020"], "validation", crop_size=CROP, batch_size=5, label="segmentation",
                      with_ids=True, seed=3)  # per_sample_max, the default
    (x, y), = batches(ds, 1)
    offsets = set()
    for i, key in enumerate(x["id"]):
        r = raw[key.decode()]
        # The window of the raw patch whose own crop-max normalisation is the pipeline's S1 crop ...
        top, left = find_offset(x["s1"][i], r["s1"], lambda w: numpy_reference(w, "s1", "per_sample_max", None))
        offsets.add((top, left))
        window = np.s_[top : top + CROP, left : left + CROP]
        # ... is the S2 crop and the mask crop too.
        np.testing.assert_allclose(x["s2"][i], numpy_reference(r["s2"][window], "s2", "per_sample_max", None),
                                   atol=1e-6)
        np.testing.assert_array_equal(y[i], np_mask(r)[window])
    assert len(offsets) > 1  # crops really are random


def test_per_patch_max_crops_are_the_crops_of_the_patch_normalised_by_its_stored_maxima(built):
    raw = raw_by_id(built["dfc2020"], "validation")
    ds = make_dataset(built["dfc2020"], "validation", crop_size=CROP, batch_size=5, label="segmentation",
                      with_ids=True, seed=3, normalization="per_patch_max")
    (x, y), = batches(ds, 1)
    for i, key in enumerate(x["id"]):
        r = raw[key.decode()]
        s1_full = numpy_reference(r["s1"], "s1", "per_patch_max", None)  # maxima of the whole patch
        s2_full = numpy_reference(r["s2"], "s2", "per_patch_max", None)
        top, left = find_offset(x["s1"][i], s1_full)
        window = np.s_[top : top + CROP, left : left + CROP]
        np.testing.assert_allclose(x["s2"][i], s2_full[window], atol=1e-6)
        np.testing.assert_array_equal(y[i], np_mask(r)[window])


def test_same_seed_same_batches_and_epochs_differ(built):
    kw = dict(crop_size=CROP, batch_size=4, seed=5, with_ids=True)
    a = batches(make_dataset(built["sen12ms"], "train", **kw), 4)
    b = batches(make_dataset(built["sen12ms"], "train", **kw), 4)
    for u, v in zip(a, b, strict=True):
        for k in u:
            np.testing.assert_array_equal(u[k], v[k])
    # 7 training samples, batch 4, remainder dropped: one batch per epoch.
    assert not np.array_equal(a[0]["s1"], a[1]["s1"])
    other = batches(make_dataset(built["sen12ms"], "train", **dict(kw, seed=6)), 1)
    assert not np.array_equal(a[0]["s1"], other[0]["s1"])


def test_each_epoch_is_a_permutation_that_depends_on_seed_and_epoch_not_on_tfs_global_seed(built):
    kw = dict(crop_size=CROP, batch_size=1, seed=3, with_ids=True, epochs=2)
    orders = []
    for global_seed in (0, 123):  # 0: where Dataset.shuffle's tensor seed fails
        tf.random.set_seed(global_seed)
        orders.append([b["id"][0] for b in batches(make_dataset(built["sen12ms"], "train", **kw))])
    assert orders[0] == orders[1]
    stored = [b["id"][0] for b in batches(make_dataset(built["sen12ms"], "train", training=False, with_ids=True,
                                                       crop_size=CROP, batch_size=1))]
    first, second = orders[0][: len(stored)], orders[0][len(stored) :]
    assert sorted(first) == sorted(second) == sorted(stored)  # every sample once per epoch
    assert len({tuple(stored), tuple(first), tuple(second)}) == 3  # shuffled, and differently each epoch


def test_resuming_at_an_epoch_gives_the_data_of_an_uninterrupted_run(built):
    kw = dict(crop_size=CROP, batch_size=2, seed=11, with_ids=True)
    uninterrupted = batches(make_dataset(built["sen12ms"], "train", epochs=3, **kw))
    per_epoch = len(uninterrupted) // 3
    resumed = batches(make_dataset(built["sen12ms"], "train", start_epoch=2, epochs=1, **kw))
    assert len(resumed) == per_epoch == 3
    for u, v in zip(uninterrupted[2 * per_epoch :], resumed, strict=True):
        np.testing.assert_array_equal(u["id"], v["id"])
        np.testing.assert_array_equal(u["s2"], v["s2"])


def test_start_step_and_steps_per_epoch_match_an_uninterrupted_run(built):
    kw = dict(crop_size=CROP, batch_size=2, seed=4, with_ids=True, steps_per_epoch=2)
    straight = batches(make_dataset(built["sen12ms"], "train", epochs=3, **kw))
    assert len(straight) == 6  # 2 of the 3 batches of each epoch
    resumed = batches(make_dataset(built["sen12ms"], "train", start_epoch=1, start_step=1, epochs=2, **kw))
    assert len(resumed) == 3
    for u, v in zip(straight[3:], resumed, strict=True):
        np.testing.assert_array_equal(u["id"], v["id"])
        np.testing.assert_array_equal(u["s1"], v["s1"])


def test_evaluation_centre_crop_is_deterministic_and_complete(built):
    raw = raw_by_id(built["dfc2020"], "test")
    kw = dict(crop_size=CROP, batch_size=3, training=False, label="multi", with_ids=True)
    first = batches(make_dataset(built["dfc2020"], "test", **kw))
    second = batches(make_dataset(built["dfc2020"], "test", **kw))
    ids = [i.decode() for x, _ in first for i in x["id"]]
    assert sorted(ids) == sorted(raw)
    start = (32 - CROP) // 2
    window = np.s_[start : start + CROP, start : start + CROP]
    for (x, y), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(x["s1"], x2["s1"])
        np.testing.assert_array_equal(y, y2)
        for i, key in enumerate(x["id"]):
            r = raw[key.decode()]
            # Each centre crop is its own sample: normalised by its own maxima.
            np.testing.assert_allclose(x["s1"][i], numpy_reference(r["s1"][window], "s1", "per_sample_max", None),
                                       atol=1e-6)
            np.testing.assert_array_equal(y[i], np_multi(np_mask(r)[window]))


def test_evaluation_tiles_cover_the_patch(built):
    raw = raw_by_id(built["dfc2020"], "test")
    ds = make_dataset(built["dfc2020"], "test", crop_size=20, batch_size=5, training=False, eval_crop="tiles", label="segmentation",
                      with_ids=True, normalization="fixed")
    seen = {}
    for x, y in batches(ds):
        for i, key in enumerate(x["id"]):
            seen.setdefault(key.decode(), []).append(y[i])
    assert set(seen) == set(raw) and all(len(t) == 4 for t in seen.values())  # 2 x 2 tiles of 20 in 32
    for key, tiles in seen.items():
        mask = np_mask(raw[key])
        for tile, (top, left) in zip(tiles, [(0, 0), (0, 12), (12, 0), (12, 12)], strict=True):
            np.testing.assert_array_equal(tile, mask[top : top + 20, left : left + 20])


def test_single_label_drops_samples_without_a_valid_pixel(built):
    raw = raw_by_id(built["dfc2020"], "validation")
    ds = make_dataset(built["dfc2020"], "validation", batch_size=4, training=False, label="single", with_ids=True)
    got = {k.decode(): int(v) for x, y in batches(ds) for k, v in zip(x["id"], y, strict=True)}
    expected = {k: np_single(np_mask(r)) for k, r in raw.items()}
    assert got == {k: v for k, v in expected.items() if v >= 0}
    # And a mask of only ignored classes really is dropped.
    assert int(labels.single_label(np.full((4, 4), 255, np.uint8))) == -1


def test_label_fractions_are_fixed_nested_and_exact(built):
    ids = SentinelSource(built["dfc2020"]).split_ids("validation")
    assert len(ids) == 5
    ten = label_subset([f"p{i}" for i in range(1000)], 0.1)
    one = label_subset([f"p{i}" for i in range(1000)], 0.01)
    assert len(ten) == 100 and len(one) == 10 and set(one) <= set(ten)
    assert ten == label_subset([f"p{i}" for i in reversed(range(1000))], 0.1)
    ds = make_dataset(built["dfc2020"], "validation", batch_size=8, training=False, label="segmentation",
                      label_fraction=0.5, with_ids=True)
    got = sorted(k.decode() for x, _ in batches(ds) for k in x["id"])
    assert got == label_subset(ids, 0.5) and len(got) == round(0.5 * 5)


def test_band_selection_by_name(built):
    raw = raw_by_id(built["dfc2020"], "test")
    ds = make_dataset(built["dfc2020"], "test", modalities=["s2"], bands={"s2": "rgb"}, batch_size=1,
                      training=False, normalization="fixed", with_ids=True)
    (x,) = batches(ds, 1)
    r = raw[x["id"][0].decode()]
    assert set(x) == {"s2", "id"} and x["s2"].shape == (1, 32, 32, 3)
    np.testing.assert_allclose(x["s2"][0], np.clip(r["s2"][..., [3, 2, 1]], 0, 10000) / 10000, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(crop_size=64), "crop_size 64 is larger than the dataset's 32 px patches"),
        (dict(split="valid"), "has no split 'valid'"),
        (dict(label="pixels"), "label must be one of"),
        (dict(label_fraction=0.0), r"label_fraction must be in \(0, 1\]"),
        (dict(bands={"s2": ["B13"]}), "s2 has no band 'B13'"),
        (dict(modalities=["s3"]), "unknown modality 's3'"),
        (dict(batch_size=1000), r"batch_size 1000 is larger than the \d+ samples of split 'validation'"),
        (dict(class_balance=True), "class_balance balances the classes of a labelled training split"),
    ],
)
def test_bad_arguments_are_user_errors(built, kwargs, message):
    kwargs = dict({"split": "validation"}, **kwargs)
    with pytest.raises(UserError, match=message):
        make_dataset(built["dfc2020"], kwargs.pop("split"), **kwargs)


# Class balance, on the synthetic DFC2020 of the small world (its validation split: 16 samples of 48 px).


@pytest.fixture(scope="module")
def synthetic_dfc(small_world):
    from sslrs_tf.datasets import open_source, synthetic_config
    from tests.conftest import SMALL_WORLD

    data_dir = next(o.split("=", 1)[1] for o in small_world if o.startswith("data.data_dir="))
    return open_source("dfc2020", data_dir, synthetic_config(SMALL_WORLD["size"]))


def np_balanced(ids, raw):
    """{id: copies} of the samples `ids`, from their whole-patch masks: max(1, floor(n_max / n_c)); -1 -> 1."""
    single = {k: np_single(np_mask(raw[k])) for k in ids}
    counts = collections.Counter(v for v in single.values() if v >= 0)
    n_max = max(counts.values())
    return {k: max(1, n_max // counts[v]) if v >= 0 else 1 for k, v in single.items()}


def one_epoch(source, **kwargs):
    """(ids, labels) of every sample of one training epoch of the validation split."""
    ds = make_dataset(source, "validation", epochs=1, with_ids=True, drop_remainder=False, batch_size=4, **kwargs)
    out = batches(ds)
    return [k.decode() for x, _ in out for k in x["id"]], [y for _, ys in out for y in ys]


def test_a_balanced_epoch_repeats_each_sample_of_a_class_by_its_copies(synthetic_dfc):
    raw = raw_by_id(synthetic_dfc.builder, "validation")
    copies = np_balanced(list(raw), raw)
    assert max(copies.values()) > 1  # the synthetic split is unbalanced: balancing does something
    assert synthetic_dfc.split_labels("validation") == {k: np_single(np_mask(r)) for k, r in raw.items()}
    # Whole patches: a sample's single label is its whole patch's, and one without a valid pixel is dropped.
    ids, ys = one_epoch(synthetic_dfc, label="single", class_balance=True, seed=1)
    single = {k: np_single(np_mask(r)) for k, r in raw.items()}
    assert collections.Counter(ids) == {k: c for k, c in copies.items() if single[k] >= 0}
    expected = collections.Counter()
    for k, c in copies.items():
        if single[k] >= 0:
            expected[single[k]] += c
    assert collections.Counter(int(y) for y in ys) == expected
    # Evaluation passes ignore it: each sample once.
    ds = make_dataset(synthetic_dfc, "validation", training=False, label="single", class_balance=True,
                      with_ids=True, batch_size=4)
    seen = [k.decode() for x, _ in batches(ds) for k in x["id"]]
    assert sorted(seen) == sorted(k for k in raw if single[k] >= 0)


def test_a_balanced_label_fraction_balances_the_kept_samples_only(synthetic_dfc):
    raw = raw_by_id(synthetic_dfc.builder, "validation")
    kept = label_subset(list(raw), 0.5)
    ids, _ = one_epoch(synthetic_dfc, label="segmentation", class_balance=True, label_fraction=0.5, seed=2)
    assert set(ids) == set(kept)
    assert collections.Counter(ids) == np_balanced(kept, raw)


@pytest.mark.parametrize("kwargs", [dict(), dict(label_fraction=0.5), dict(class_balance=True),
                                    dict(class_balance=True, label_fraction=0.25)])
def test_training_size_is_the_number_of_samples_an_epoch_yields(synthetic_dfc, kwargs):
    ids, _ = one_epoch(synthetic_dfc, label="segmentation", crop_size=16, **kwargs)
    assert training_size(synthetic_dfc, "validation", label="segmentation", **kwargs) == len(ids)
    if kwargs == dict(class_balance=True):
        assert len(ids) > len(set(ids))  # (the 4 samples kept at 25 % happen to be balanced already)


@pytest.fixture(scope="module")
def synthetic_sen12ms(small_world):
    from sslrs_tf.datasets import open_source, synthetic_config
    from tests.conftest import SMALL_WORLD

    data_dir = next(o.split("=", 1)[1] for o in small_world if o.startswith("data.data_dir="))
    return open_source("sen12ms", data_dir, synthetic_config(SMALL_WORLD["size"]))


@pytest.mark.parametrize("scheme, classes", [("igbp", 17), ("igbp_simple", 10)])
def test_sen12ms_scene_labels_of_a_scheme_are_numpys_from_the_lc_band(synthetic_sen12ms, scheme, classes):
    from tests.data.test_labels import IGBP_TO_SIMPLE

    table = {v: v - 1 for v in range(1, 18)} if scheme == "igbp" else IGBP_TO_SIMPLE
    raw = raw_by_id(synthetic_sen12ms.builder, "holdout")
    to_scheme = np.vectorize(lambda v: table.get(int(v), 255), otypes=[np.uint8])
    assert len(synthetic_sen12ms.label_names(scheme)) == classes
    for kind in ("single", "multi"):
        ds = make_dataset(synthetic_sen12ms, "holdout", training=False, label=kind, label_scheme=scheme,
                          batch_size=4, drop_remainder=False, with_ids=True)
        got = {i.decode(): y for x, ys in batches(ds) for i, y in zip(x["id"], ys)}
        assert len(got) == len(raw)
        for key, y in got.items():
            mask = to_scheme(raw[key]["lc"][..., 0])
            counts = np.bincount(mask[mask != 255], minlength=classes)
            if kind == "single":
                assert y == counts.argmax(), key
            else:
                np.testing.assert_array_equal(y, (counts >= 0.1 * mask.size).astype(np.float32), err_msg=key)
    with pytest.raises(UserError, match="has no label scheme 'bigearthnet19'; it has dfc8, igbp, igbp_simple"):
        make_dataset(synthetic_sen12ms, "holdout", label="single", label_scheme="bigearthnet19")


def test_a_label_count_keeps_that_many_samples_nested_with_the_fractions(synthetic_sen12ms):
    ids = synthetic_sen12ms.split_ids("train")
    half = label_subset(ids, 0.5)
    five = label_subset(ids, 1.0, count=5)
    assert len(five) == 5 and set(five) <= set(half) and set(label_subset(ids, 1.0, count=3)) <= set(five)
    ds = make_dataset(synthetic_sen12ms, "train", label="multi", label_scheme="igbp", label_count=5, epochs=1,
                      batch_size=2, drop_remainder=False, with_ids=True, crop_size=16)
    assert sorted(i.decode() for x, _ in batches(ds) for i in x["id"]) == five
    assert training_size(synthetic_sen12ms, "train", label="multi", label_count=5) == 5
    with pytest.raises(UserError, match="label_count must be a positive integer, and label_fraction 1 with it"):
        make_dataset(synthetic_sen12ms, "train", label="multi", label_count=5, label_fraction=0.5)
