"""Tests of the DFC2020 builder: the TFDS harness on dummy_data, both folder namings, bad input."""

import shutil

import numpy as np
import pytest
import rasterio
import tensorflow_datasets as tfds

from sslrs_tf.data import layout
from sslrs_tf.errors import DataError, UserError
from tests.helpers import BEAM_IN_PROCESS, DFC2020_DUMMY, beam_options, copy_tree, tfds_records
from tfds_builders.dfc2020 import Builder, Dfc2020Config

SIZE = 32


class SmallBuilder(Builder, skip_registration=True):
    """The real builder with the dummy data's 32 px patches."""

    BUILDER_CONFIGS = [Dfc2020Config(name="default", patch_size=SIZE)]


class Dfc2020Test(tfds.testing.DatasetBuilderTestCase):
    """TFDS harness: builds from dummy_data (validation in the `s1_0` naming; one S1 with NaN skipped)."""

    DATASET_CLASS = SmallBuilder
    DUMMY_DATA = DFC2020_DUMMY
    SPLITS = {"validation": 5, "test": 4}
    SKIP_CHECKSUMS = True

    def test_registered(self):
        # SmallBuilder is deliberately unregistered; the real builder must be.
        self.assertIn(Builder.name, tfds.list_builders(with_community_datasets=False))


def build(manual_dir, data_dir, beam=None, **config):
    """Builds DFC2020 with the Python API; returns the builder. `beam`: Beam pipeline flags."""
    builder = Builder(config=Dfc2020Config(**{"name": "t", "patch_size": SIZE, **config}), data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir),
                                                                             beam_options=beam_options(beam)))
    return builder


def test_a_beam_build_writes_the_records_and_skip_counts_of_the_plain_build(tmp_path):
    manual = copy_tree(DFC2020_DUMMY, tmp_path / "manual")
    next(manual.rglob("ROIs0000_test/s2_0/*.tif")).unlink()
    plain = build(manual, tmp_path / "plain")
    beam = build(manual, tmp_path / "beam", beam=BEAM_IN_PROCESS)
    assert beam.info.metadata == plain.info.metadata
    assert plain.info.metadata["skipped"] == {"test": {"missing_s2": 1}, "validation": {"s1_nan": 1}}
    for split in ("validation", "test"):
        assert beam.info.splits[split].shard_lengths == plain.info.splits[split].shard_lengths
        assert tfds_records(beam, split) == tfds_records(plain, split)


def rename_validation(manual, suffix):
    roi = manual / "ROIs0000_validation"
    for kind in layout.DFC2020_KINDS:
        (roi / f"{kind}_0").rename(roi / f"{kind}_{suffix}")


@pytest.mark.parametrize("suffix", ["validation", "0"])
def test_both_validation_namings_give_the_same_dataset(tmp_path, suffix):
    manual = copy_tree(DFC2020_DUMMY, tmp_path / "manual")
    if suffix != "0":
        rename_validation(manual, suffix)
    builder = build(manual, tmp_path / "out")
    got = list(tfds.as_numpy(builder.as_dataset(split="validation")))
    assert sorted(ex["patch"] for ex in got) == [0, 1, 3, 4, 5]  # patch 2 has NaN in S1
    assert builder.info.metadata["skipped"] == {"validation": {"s1_nan": 1}}
    ex = got[0]
    path = manual / layout.dfc2020_path("validation", "dfc", ex["patch"], suffix)
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(ex["dfc"], src.read(1))
    assert ex["dfc"].shape == (SIZE, SIZE) and ex["dfc"].dtype == np.uint8


def test_missing_label_folder_is_named(tmp_path):
    manual = copy_tree(DFC2020_DUMMY, tmp_path / "manual")
    shutil.rmtree(manual / "ROIs0000_test" / "dfc_0")
    with pytest.raises(UserError, match=r"has no folder ROIs0000_test/dfc_0 \(the labels\)"):
        build(manual, tmp_path / "out")


def test_missing_validation_folder_names_both_namings(tmp_path):
    manual = copy_tree(DFC2020_DUMMY, tmp_path / "manual")
    shutil.rmtree(manual / "ROIs0000_validation" / "s2_0")
    with pytest.raises(UserError, match=r"ROIs0000_validation/s2_validation or ROIs0000_validation/s2_0"):
        build(manual, tmp_path / "out")


def test_missing_split_folder_is_named(tmp_path):
    manual = copy_tree(DFC2020_DUMMY, tmp_path / "manual")
    shutil.rmtree(manual / "ROIs0000_test")
    with pytest.raises(UserError, match=r"has no folder ROIs0000_test \(DFC2020 test split\)"):
        build(manual, tmp_path / "out")


def test_missing_file_is_skipped_and_counted(tmp_path):
    manual = copy_tree(DFC2020_DUMMY, tmp_path / "manual")
    (manual / layout.dfc2020_path("test", "dfc", 1)).unlink()
    builder = build(manual, tmp_path / "out")
    assert builder.info.metadata["skipped"]["test"] == {"missing_dfc": 1}
    assert builder.info.splits["test"].num_examples == 3


@pytest.mark.parametrize("dtype, value", [("uint8", 17), ("uint16", 300)])
def test_a_label_file_with_values_outside_the_dfc10_classes_stops_the_build_naming_it(tmp_path, dtype, value):
    # A DFC-10 mask holds 1..10 (0 = no data): 17 fits a byte but is no class (it would have become "ignored").
    manual = copy_tree(DFC2020_DUMMY, tmp_path / "manual")
    victim = manual / layout.dfc2020_path("test", "dfc", 0)
    with rasterio.open(victim) as src:
        profile, mask = dict(src.profile, dtype=dtype), src.read().astype(dtype)
    mask[0, :2, :3] = value
    with rasterio.open(victim, "w", **profile) as dst:
        dst.write(mask)
    with pytest.raises(DataError) as err:
        build(manual, tmp_path / "out")
    assert str(err.value) == (f"{victim}: has DFC-10 values outside its classes 0..10 ({value}; 0 = no data) "
                              "in 6 pixel(s)")
