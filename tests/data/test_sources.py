"""The sources behind the input pipeline: what every reader shares (crops, label fractions), what a
Sentinel source reads, and which objects name a dataset."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from sslrs_tf.data.pipeline import as_source, make_dataset, training_size
from sslrs_tf.data.sources import SentinelSource, balanced_copies, checked_crop, kept_count, random_crop_offsets
from sslrs_tf.errors import UserError
from tests.helpers import eager_and_in_tf_data, eurosat_fake

# DFC2020 validation, single labels: the counts behind the research code's balanced split
# (splits/validation_observations_balanced_classes.csv) and its copies per class.
PUBLISHED = {"Forest": (76, 4), "Shrubland": (37, 9), "Grassland": (101, 3), "Wetlands": (180, 2),
             "Croplands": (156, 2), "Urban": (62, 5), "Barren": (23, 15), "Water": (351, 1)}


def test_random_crops_depend_on_seed_epoch_and_batch_only_and_stay_inside_the_patch():
    crops = lambda seed, epoch, batch: random_crop_offsets(seed, epoch, batch, 500, 48, 32)  # noqa: E731
    eager, graph = eager_and_in_tf_data(lambda *a: tf.stack(crops(*a)), tf.constant(3, tf.int64),
                                        tf.constant(2, tf.int64), tf.constant(5, tf.int64))
    np.testing.assert_array_equal(eager, graph)
    assert eager.min() == 0 and eager.max() == 48 - 32  # every offset at which the crop fits, no other
    again = np.stack(crops(3, 2, 5))
    np.testing.assert_array_equal(eager, again)
    for other in [(4, 2, 5), (3, 3, 5), (3, 2, 6)]:
        assert not np.array_equal(eager, np.stack(crops(*other)))


def test_kept_counts_and_crops_that_do_not_fit():
    assert [kept_count(100, f) for f in (0.01, 0.1, 0.5, 1.0)] == [1, 10, 50, 100]
    assert kept_count(5, 0.01) == 1  # at least one sample
    assert checked_crop(None, 32) == 32 and checked_crop(24, 32) == 24
    with pytest.raises(UserError, match="crop_size 40 is larger than the dataset's 32 px patches"):
        checked_crop(40, 32)


def test_a_sentinel_source_counts_names_and_lists_its_samples(built):
    builder = built["dfc2020"]
    source = as_source(builder)
    assert isinstance(source, SentinelSource) and as_source(source) is source
    assert source.num_examples("validation") == builder.info.splits["validation"].num_examples
    assert len(source.split_ids("validation")) == source.num_examples("validation")
    assert source.class_names[0] == "Forest" and len(source.class_names) == 8
    with pytest.raises(UserError, match=r"dfc2020/dummy/1.0.0 has no split 'train'; it has \['test', 'validation'\]"):
        source.num_examples("train")
    with pytest.raises(UserError, match="is not a dataset: expected a built dataset folder"):
        as_source("nowhere/at/all")


def test_a_truncated_or_missing_shard_is_refused_naming_it(built, tmp_path):
    import shutil

    import tensorflow_datasets as tfds

    copy = tmp_path / "dfc2020"
    shutil.copytree(built["dfc2020"].data_dir, copy)
    source = as_source(tfds.builder_from_directory(str(copy)))
    (shard,) = source.builder.info.splits["validation"].filepaths
    records = source.builder.info.splits["validation"].num_examples
    with open(shard, "r+b") as f:  # an interrupted copy: the first half of the file
        f.truncate(f.seek(0, 2) // 2)
    cut = rf"^{shard}: [0-9]+ of the {records} records dataset_info.json lists(, then a truncated one)? \(a truncated"
    with pytest.raises(UserError, match=cut):
        source.split_ids("validation")
    source = as_source(tfds.builder_from_directory(str(copy)))
    with pytest.raises(UserError, match=cut):
        source.num_examples("validation")
    (test_shard,) = source.builder.info.splits["test"].filepaths
    with open(test_shard, "r+b") as f:  # cut after its first record: TF reads the file as a shorter one
        f.truncate(16 + int.from_bytes(f.read(8), "little"))
    assert len(list(tf.data.TFRecordDataset(test_shard))) == 1
    with pytest.raises(UserError, match=rf"^{test_shard}: 1 of the [0-9]+ records dataset_info.json lists \(a"):
        source.num_examples("test")
    pathlib.Path(test_shard).unlink()
    with pytest.raises(UserError, match=rf"^{test_shard}: missing \(dataset_info.json lists it\)"):
        source.num_examples("test")
    assert len(as_source(built["dfc2020"]).split_ids("validation")) == records  # the intact original


def test_balanced_copies_on_the_published_counts():
    counts = [n for n, _ in PUBLISHED.values()]
    labels = np.repeat(np.arange(8), counts)
    copies = balanced_copies(labels)
    order = np.random.default_rng(0).permutation(len(labels))
    np.testing.assert_array_equal(balanced_copies(labels[order]), copies[order])  # the order does not matter
    per_class = [int(copies[labels == c][0]) for c in range(8)]
    published = [c for _, c in PUBLISHED.values()]
    # max(1, floor(351 / n_c)): every published count but Wetlands (351 / 180 = 1.95 -> 1, published 2).
    assert per_class == [4, 9, 3, 1, 2, 5, 15, 1]
    assert [p for p, c in zip(published, per_class, strict=True) if p != c] == [PUBLISHED["Wetlands"][1]]
    assert len(labels) == 986 and copies.sum() == 2438  # the research code's copy: 2 618 rows
    assert sum(n * c for n, c in PUBLISHED.values()) == 2618
    # Samples of one class are all copied alike; a sample without a label gets one copy and is not counted.
    assert all(len(set(copies[labels == c])) == 1 for c in range(8))
    with_none = balanced_copies(np.r_[labels, -1, -1, -1])
    np.testing.assert_array_equal(with_none, np.r_[copies, 1, 1, 1])
    np.testing.assert_array_equal(balanced_copies([2, 2, 5, -1]), [1, 1, 2, 1])
    assert balanced_copies([]).shape == (0,) and list(balanced_copies([-1, -1])) == [1, 1]


def test_catalog_sources_refuse_class_balance_and_scale_by_the_crop_or_the_whole_image(tmp_path):
    import tensorflow_datasets as tfds

    from sslrs_tf.data.catalog import CatalogSource
    from tests.data.test_normalization import numpy_reference

    with tfds.testing.mock_data(as_dataset_fn=eurosat_fake(n=8, noise=True)):
        source = CatalogSource("eurosat", str(tmp_path))
        with pytest.raises(UserError, match="class_balance is supported for SEN12MS and DFC2020 only"):
            make_dataset(source, "train", modalities=("s2",), label="single", class_balance=True, batch_size=2)
        with pytest.raises(UserError, match="class_balance is supported for SEN12MS and DFC2020 only"):
            training_size(source, "train", label="single", class_balance=True)
        assert training_size(source, "train", label="single", label_fraction=0.5) == 4
        images = next(iter(source.read("train").batch(8)))["sentinel2"].numpy()
        kw = dict(modalities=("s2",), bands={"s2": ["B02", "B03"]}, training=False, crop_size=32, batch_size=8)
        crop = np.s_[:, 16:48, 16:48]
        index = [list(source.spec.bands).index(b) for b in ("B02", "B03")]
        raw = images[..., index]
        for method, expected in (
            ("per_sample_max", numpy_reference(raw[crop], "s2", "per_sample_max", None)),  # the crop's maxima
            ("per_patch_max", numpy_reference(raw, "s2", "per_patch_max", None)[crop]),  # the whole image's
        ):
            got = next(iter(make_dataset(source, "train", normalization=method, **kw)))["s2"].numpy()
            np.testing.assert_allclose(got, expected, atol=1e-6)
