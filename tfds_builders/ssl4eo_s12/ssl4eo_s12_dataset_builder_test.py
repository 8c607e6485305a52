"""Tests of the SSL4EO-S12 builder: the TFDS harness on dummy_data (written in the dataset's layout), seasons
paired by date, coarser bands repeated onto the 10 m grid, one-line errors."""

import shutil

import numpy as np
import pytest
import rasterio
import tensorflow_datasets as tfds

from sslrs_tf.data import ssl4eo
from sslrs_tf.errors import DataError, UserError
from tests.helpers import ROOT, copy_tree, realdata
from tfds_builders.ssl4eo_s12 import Builder, Ssl4eoS12Config

DUMMY = ROOT / "tfds_builders" / "ssl4eo_s12" / "dummy_data"
SIZE = 12


class SmallBuilder(Builder, skip_registration=True):
    """The real builder with the dummy data's 12 px grid."""

    BUILDER_CONFIGS = [Ssl4eoS12Config(name="l1c", patch_size=SIZE, holdout_fraction=0.0)]


class Ssl4eoS12Test(tfds.testing.DatasetBuilderTestCase):
    """TFDS harness: 3 locations, one of them without its last S2 season (skipped and counted)."""

    DATASET_CLASS = SmallBuilder
    DUMMY_DATA = DUMMY
    SPLITS = {"train": 2}
    SKIP_CHECKSUMS = True

    def test_registered(self):
        self.assertIn(Builder.name, tfds.list_builders(with_community_datasets=False))


def build(manual_dir, data_dir, **config):
    builder = Builder(config=Ssl4eoS12Config(**{"name": "t", "patch_size": SIZE, **config}), data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


def test_a_location_holds_its_seasons_in_date_order_with_coarse_bands_repeated(tmp_path):
    builder = build(DUMMY, tmp_path, holdout_fraction=0.0)
    assert builder.info.metadata["skipped"] == {"train": {"missing_season": 1}}
    examples = {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
    assert sorted(examples) == ["0000000", "0000002"]
    ex = examples["0000000"]
    assert [d.decode() for d in ex["s2_dates"]] == ["20200312", "20200607", "20200903", "20201204"]
    # S1's folders (S1B_..., S1A_...) do not sort by name in date order: paired by their dates.
    assert [d.decode() for d in ex["s1_dates"]] == ["20200311", "20200606", "20200902", "20201203"]
    assert ex["s1"].shape == (4, SIZE, SIZE, 2) and ex["s2"].shape == (4, SIZE, SIZE, 13)
    season = sorted((DUMMY / "s2c" / "0000000").iterdir())[2]  # 20200903
    for i, band in enumerate(builder.info.metadata["s2_bands"]):
        with rasterio.open(season / ssl4eo.band_file(band)) as src:
            raw = src.read(1)
        factor = SIZE // raw.shape[0]
        assert factor == {"B01": 6, "B09": 6, "B10": 6, "B05": 2, "B06": 2, "B07": 2, "B8A": 2, "B11": 2,
                          "B12": 2}.get(band, 1)
        np.testing.assert_array_equal(ex["s2"][2, ..., i], np.kron(raw, np.ones((factor, factor), raw.dtype)))
    s1_season = next((DUMMY / "s1" / "0000000").glob("S1B_IW_GRDH_1SDV_20200902T*"))
    with rasterio.open(s1_season / "VH.tif") as src:
        np.testing.assert_array_equal(ex["s1"][2, ..., 1], src.read(1))
    np.testing.assert_array_equal(ex["s2_max"], ex["s2"].max(axis=(1, 2)))


def test_l2a_has_twelve_bands_and_seasons_can_be_fewer(tmp_path):
    from sslrs_tf.data import synthetic

    synthetic.generate_ssl4eo(tmp_path / "raw", 4, SIZE, level="l2a")
    builder = build(tmp_path / "raw", tmp_path / "out", level="l2a", seasons=2, holdout_fraction=0.25)
    ex = next(iter(tfds.as_numpy(builder.as_dataset(split="train"))))
    assert ex["s2"].shape == (2, SIZE, SIZE, 12) and "B10" not in builder.info.metadata["s2_bands"]
    assert [d.decode() for d in ex["s2_dates"]] == ["20200312", "20200607"]
    # Whole locations are held out.
    ids = {split: {e["id"].decode() for e in tfds.as_numpy(builder.as_dataset(split=split))} for split in ("train", "holdout")}
    assert len(ids["holdout"]) == 1 and ids["train"] | ids["holdout"] == {f"{i:07d}" for i in range(4)}


def test_a_patch_size_off_the_band_grids_and_a_rebuild_with_other_arguments_are_refused(tmp_path):
    with pytest.raises(UserError, match=r"config patch_size must be a positive multiple of 6"):
        Ssl4eoS12Config(name="x", patch_size=100)
    from sslrs_tf.datasets import build as build_by_name

    config = {"name": "t", "patch_size": SIZE, "holdout_fraction": 0.0}
    build_by_name("ssl4eo_s12", DUMMY, tmp_path, config)
    assert build_by_name("ssl4eo_s12", DUMMY, tmp_path, config).info.splits["train"].num_examples == 2
    with pytest.raises(UserError, match=r"ssl4eo_s12/t/1.0.0 in .* was built with seasons=4, not 2; give the config "
                                        r"another name, or delete that folder to rebuild"):
        build_by_name("ssl4eo_s12", DUMMY, tmp_path, {**config, "seasons": 2})


def test_missing_folders_and_broken_files_are_named(tmp_path):
    with pytest.raises(UserError, match=r"has no folder s2a \(level l2a\)"):
        build(DUMMY, tmp_path / "a", level="l2a")
    manual = copy_tree(DUMMY, tmp_path / "manual")
    victim = next((manual / "s2c" / "0000002").iterdir()) / "B5.tif"
    with rasterio.open(victim) as src:
        profile = src.profile
    profile.update(width=9, height=9)
    with rasterio.open(victim, "w", **profile) as dst:
        dst.write(np.zeros((1, 9, 9), np.uint16))
    with pytest.raises(DataError, match=r"B5.tif: is 9 x 9 px, expected 12 x 12 or 6 or 2 px square"):
        build(manual, tmp_path / "b")
    builder = build(manual, tmp_path / "c", on_error="skip", holdout_fraction=0.0)
    assert builder.info.metadata["skipped"] == {"train": {"bad_file": 1, "missing_season": 1}}
    nan = copy_tree(DUMMY, tmp_path / "nan")
    with rasterio.open(next((nan / "s1" / "0000000").iterdir()) / "VV.tif", "r+") as dst:
        dst.write(np.full((1, SIZE, SIZE), np.nan, np.float32))
    builder = build(nan, tmp_path / "e", holdout_fraction=0.0)
    assert builder.info.metadata["skipped"] == {"train": {"missing_season": 1, "s1_nan": 1}}
    shutil.rmtree(manual / "s1")
    with pytest.raises(UserError, match=r"has no folder s1"):
        build(manual, tmp_path / "d")


def test_a_band_a_pixel_off_its_grid_is_resampled_onto_it(tmp_path):
    manual = copy_tree(DUMMY, tmp_path / "manual")
    victim = sorted((manual / "s2c" / "0000002").iterdir())[1] / "B2.tif"  # a 10 m band, the second season
    with rasterio.open(victim) as src:
        profile = dict(src.profile, width=SIZE - 1, height=SIZE - 1)
    values = np.arange((SIZE - 1) ** 2, dtype=np.uint16).reshape(1, SIZE - 1, SIZE - 1)
    with rasterio.open(victim, "w", **profile) as dst:
        dst.write(values)
    builder = build(manual, tmp_path / "out", holdout_fraction=0.0)
    ex = next(e for e in tfds.as_numpy(builder.as_dataset(split="train")) if e["id"] == b"0000002")
    band = ex["s2"][1, ..., 1]
    assert band.shape == (SIZE, SIZE) and set(np.unique(band)) <= set(values.ravel())
    assert band[0, 0] == 0 and band[-1, -1] == values.max()  # nearest neighbour: the corners stay the corners


def test_the_real_sen1floods11_chip_written_in_the_ssl4eo_layout(tmp_path):
    """The real chip's S1 and S2 values (int16 S2, +25 dB S1 outliers, EPSG:4326) cut to 264 px and written as
    SSL4EO-S12 stores a location: one file per band, the 20 m and 60 m bands at 132 and 44 px."""
    folder = realdata("sen1floods11_chip")
    with rasterio.open(folder / "Spain_7370579_S2Hand.tif") as src:
        s2, profile = src.read(window=((0, 264), (0, 264))), dict(src.profile, width=264, height=264, count=1)
    with rasterio.open(folder / "Spain_7370579_S1Hand.tif") as src:
        s1 = src.read(window=((0, 264), (0, 264)))
    coarse = {"B01": 6, "B09": 6, "B10": 6, "B05": 2, "B06": 2, "B07": 2, "B8A": 2, "B11": 2, "B12": 2}
    expected = np.zeros((264, 264, 13), np.uint16)
    for day in ("20190312", "20190607", "20190903", "20191204"):
        for sensor, name, bands, data in (("s2c", f"{day}T101559_{day}T101817_T30SYJ", ssl4eo.LEVELS["l1c"][1], s2),
                                          ("s1", f"S1B_IW_GRDH_1SDV_{day}T061022_x", ("VV", "VH"), s1)):
            (tmp_path / sensor / "0000000" / name).mkdir(parents=True)
            for i, band in enumerate(bands):
                f = coarse.get(band, 1)
                values = data[i, ::f, ::f]  # a coarser band's pixel: one of its block's
                with rasterio.open(tmp_path / sensor / "0000000" / name / ssl4eo.band_file(band), "w",
                                   **dict(profile, width=264 // f, height=264 // f, dtype=values.dtype)) as dst:
                    dst.write(values[None])
                if sensor == "s2c":
                    expected[..., i] = np.kron(np.clip(values, 0, None), np.ones((f, f), values.dtype))
    builder = build(tmp_path, tmp_path / "out", patch_size=264, holdout_fraction=0.0)
    ex = next(iter(tfds.as_numpy(builder.as_dataset(split="train"))))
    np.testing.assert_array_equal(ex["s2"][3], expected)
    np.testing.assert_array_equal(ex["s1"][0], np.moveaxis(s1, 0, -1))
    assert ex["s1"].max() > 20  # the chip's bright outliers, kept raw
