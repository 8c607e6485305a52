"""EuroSAT and BigEarthNet from the TFDS catalog, faked offline with tfds.testing.mock_data.

The fakes hold known values per band, so the tests see whether bands arrive by
name (EuroSAT stores B8A last; BigEarthNet stores bands at three resolutions and
has no B10) and how the missing band is handled.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from sslrs_tf.data.bands import S2_BANDS
from sslrs_tf.data.catalog import CATALOG, CatalogSource, fill_missing
from sslrs_tf.data.normalization import Normalization
from sslrs_tf.datasets import make_dataset
from sslrs_tf.errors import UserError
from tests.helpers import BAND_VALUE, eager_and_in_tf_data, eurosat_fake

EUROSAT = CATALOG["eurosat"]
BIGEARTHNET = CATALOG["bigearthnet"]


def bigearthnet_rasters(rng):
    """One BigEarthNet example's bands at their native sizes: random values, so resampling is visible."""
    sizes = {"B01": 20, "B09": 20, "B05": 60, "B06": 60, "B07": 60, "B8A": 60, "B11": 60, "B12": 60}
    return {b: rng.uniform(0, 3000, (sizes.get(b, 120),) * 2).astype(np.float32) for b in BIGEARTHNET.bands}


def bigearthnet_fake(examples, labels):
    def fake(self, split, decoders=None, read_config=None, **kwargs):
        def gen():
            for bands, y in zip(examples, labels, strict=True):
                yield {**bands, "labels": np.array(y, np.int64)}
        signature = {b: tf.TensorSpec(x.shape, tf.float32) for b, x in examples[0].items()}
        signature["labels"] = tf.TensorSpec([None], tf.int64)
        return tf.data.Dataset.from_generator(gen, output_signature=signature).apply(
            tf.data.experimental.assert_cardinality(len(examples)))
    return fake


def bilinear_upsample(x, size):
    """NumPy reference: bilinear resampling with pixel-area-aligned grids (half-pixel centres), edges clamped."""
    n = x.shape[0]
    src = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = src - lo
    rows = x[lo] * (1 - w)[:, None] + x[hi] * w[:, None]
    return rows[:, lo] * (1 - w)[None, :] + rows[:, hi] * w[None, :]


def test_eurosat_bands_arrive_by_name_not_position():
    with tfds.testing.mock_data(as_dataset_fn=eurosat_fake()):
        ds = make_dataset("eurosat", "train", modalities=("s2",), normalization="fixed", training=False,
                          label="single", batch_size=6)
        x, y = next(iter(ds))
    expected = np.array([BAND_VALUE[b] / 10000 for b in S2_BANDS], np.float32)  # SEN12MS order: B8A after B08
    np.testing.assert_allclose(x["s2"].numpy()[:, 5, 7], np.broadcast_to(expected, (6, 13)), rtol=1e-6)
    assert x["s2"].shape == (6, 64, 64, 13)
    np.testing.assert_array_equal(y.numpy(), np.arange(6) % 10)


def test_eurosat_band_subset_and_crops():
    with tfds.testing.mock_data(as_dataset_fn=eurosat_fake()):
        ds = make_dataset("eurosat", "train", modalities=("s2",), bands={"s2": "rgb"}, normalization="fixed",
                          crop_size=24, batch_size=3, seed=1, epochs=1, label="single")
        batches = list(ds)
    assert [b[0]["s2"].shape for b in batches] == [(3, 24, 24, 3)] * 2
    np.testing.assert_allclose(batches[0][0]["s2"].numpy()[0, 0, 0], [0.04, 0.03, 0.02], rtol=1e-6)


def test_bigearthnet_resamples_to_the_10m_grid_and_refuses_the_missing_band():
    rng = np.random.default_rng(0)
    examples = [bigearthnet_rasters(rng) for _ in range(3)]
    labels = [[3, 3, 7], [], [42]]
    norm = Normalization("fixed")
    with tfds.testing.mock_data(as_dataset_fn=bigearthnet_fake(examples, labels)):
        with pytest.raises(UserError, match="bigearthnet/all has no S2 band B10 .*data.missing_bands: zeros"):
            make_dataset("bigearthnet", "train", modalities=("s2",), label="multi")
        x, y = next(iter(make_dataset("bigearthnet", "train", modalities=("s2",), label="multi", normalization=norm,
                                      missing_bands="zeros", training=False, batch_size=3)))
    x = x["s2"].numpy()
    assert x.shape == (3, 120, 120, 13)
    for i, example in enumerate(examples):
        for c, band in enumerate(S2_BANDS):
            if band == "B10":
                np.testing.assert_array_equal(x[i, ..., c], 0.0)  # fed as zeros after normalisation
            else:
                raw = example[band]
                reference = raw if raw.shape[0] == 120 else bilinear_upsample(raw.astype(np.float64), 120)
                np.testing.assert_allclose(x[i, ..., c], reference / 10000, atol=2e-5, err_msg=band)
    expected = np.zeros((3, 43), np.float32)
    expected[0, [3, 7]] = 1  # a class listed twice counts once; no class: all zeros
    expected[2, 42] = 1
    np.testing.assert_array_equal(y.numpy(), expected)


def test_raster_and_fill_missing_eagerly_and_in_tf_data():
    rng = np.random.default_rng(1)
    example = {k: tf.constant(v) for k, v in bigearthnet_rasters(rng).items()}
    bands = ["B8A", "B10", "B02"]
    present = ["B8A", "B02"]
    eager, graph = eager_and_in_tf_data(lambda ex: fill_missing(BIGEARTHNET.raster(ex, present), bands, present),
                                        example)
    np.testing.assert_allclose(eager, graph, rtol=1e-6)
    np.testing.assert_array_equal(eager[..., 1], 0.0)
    np.testing.assert_allclose(eager[..., 2], example["B02"].numpy())
    np.testing.assert_allclose(eager[..., 0], bilinear_upsample(example["B8A"].numpy().astype(np.float64), 120),
                               rtol=1e-5)


def test_label_fraction_keeps_a_nested_prefix_of_the_split():
    with tfds.testing.mock_data(as_dataset_fn=eurosat_fake(n=20)):
        def kept(fraction):
            ds = make_dataset("eurosat", "train", modalities=("s2",), training=False, label="single",
                              label_fraction=fraction, batch_size=100, bands={"s2": ["B02"]})
            return [y for _, ys in ds for y in ys.numpy()]

        assert kept(0.25) == list(np.arange(5) % 10)
        assert kept(0.5) == list(np.arange(10) % 10)
        assert kept(0.01) == [0]  # at least one sample


def test_sizes_classes_and_clear_errors(tmp_path):
    with tfds.testing.mock_data(as_dataset_fn=eurosat_fake(n=7)):
        source = CatalogSource("eurosat", str(tmp_path))
        assert source.num_examples("train") == 7
        assert source.class_names[:2] == ["AnnualCrop", "Forest"] and len(source.class_names) == 10
        with pytest.raises(UserError, match="holds Sentinel-2 only.*only_s2"):
            make_dataset(source, "train", modalities=("s1", "s2"))
        with pytest.raises(UserError, match="single-label targets; set data.label: single"):
            make_dataset(source, "train", modalities=("s2",), label="multi")
    assert len(CatalogSource("bigearthnet", str(tmp_path)).class_names) == 43  # from the builder's code, no data
    # Not mocked: nothing was downloaded into tmp_path.
    with pytest.raises(UserError, match=r"eurosat/all is not in .*tfds build eurosat/all --data_dir"):
        make_dataset("eurosat", "train", data_dir=str(tmp_path), modalities=("s2",))


def test_bigearthnet_19_classes_are_unions_of_its_43_labels():
    rng = np.random.default_rng(2)
    examples = [bigearthnet_rasters(rng) for _ in range(3)]
    # TFDS orders the 43 labels alphabetically: 11, 12 continuous and discontinuous urban fabric; 32 road and rail
    # networks (no 19-class counterpart); 3 bare rock and 6 burnt areas (none either); 7 coastal lagoons,
    # 14 estuaries, 36 sea and ocean; 25 non-irrigated arable land.
    labels = [[11, 12, 32], [3, 6], [7, 14, 36, 25]]
    expected = np.zeros((3, 19), np.float32)
    expected[0, 0] = 1  # Urban fabric
    expected[2, [18, 2]] = 1  # Marine waters, Arable land
    with tfds.testing.mock_data(as_dataset_fn=bigearthnet_fake(examples, labels)):
        source = CatalogSource("bigearthnet")
        assert len(source.label_names("bigearthnet19")) == 19 and source.label_names("bigearthnet43") == \
            source.label_names() and len(source.label_names()) == 43
        _, y = next(iter(make_dataset("bigearthnet", "train", modalities=("s2",), label="multi", training=False,
                                      label_scheme="bigearthnet19", data_dir=None, batch_size=3,
                                      bands={"s2": "s2_10"}, normalization="fixed")))
        with pytest.raises(UserError, match="eurosat/all.* has no label scheme 'bigearthnet19'; it has only its own"):
            make_dataset("eurosat", "train", modalities=("s2",), label="single", label_scheme="bigearthnet19")
    np.testing.assert_array_equal(y.numpy(), expected)


# BigEarthNet's 43 labels in TFDS's (alphabetical) order and the index of the 19-class nomenclature's class each
# belongs to, written out by hand (None: dropped from the nomenclature).
BEN43_TO_19 = [7, None, 3, None, 14, 8, None, 18, 5, 9, None, 0, 0, None, 18, 3, None, 1, 15, None, 6, None, 10, 12,
               11, 2, 3, 4, 15, 2, None, 2, None, 16, 16, 12, 18, 11, None, 13, 3, 17, 17]


def test_the_19_class_table_against_a_hand_made_one():
    from sslrs_tf.data.catalog import BIGEARTHNET19, scheme_matrix

    with tfds.testing.mock_data(as_dataset_fn=bigearthnet_fake([bigearthnet_rasters(np.random.default_rng(3))],
                                                               [[0]])):
        names = CatalogSource("bigearthnet").class_names
    matrix = np.array(scheme_matrix(names, BIGEARTHNET19))
    assert matrix.shape == (43, 19) and (matrix.sum(axis=1) <= 1).all()
    got = [int(row.argmax()) if row.any() else None for row in matrix]
    assert got == BEN43_TO_19 and got.count(None) == 11
    with pytest.raises(UserError, match="the dataset's labels lack pastures"):
        scheme_matrix([n for n in names if n != "Pastures"], BIGEARTHNET19)
