"""Tests of the paired-chips builder: the TFDS harness on dummy_data, labels, splits, Beam, one-line errors."""

import numpy as np
import pytest
import rasterio
import tensorflow_datasets as tfds

from sslrs_tf.data import synthetic
from sslrs_tf.data.bands import S2_BANDS
from sslrs_tf.errors import DataError, UserError
from tests.helpers import BEAM_IN_PROCESS, CHIPS_DUMMY, beam_options, copy_tree, realdata, tfds_records
from tfds_builders.paired_chips import Builder, PairedChipsConfig

SIZE = 32


class SmallBuilder(Builder, skip_registration=True):
    """The real builder with the dummy data's 32 px chips and their classes."""

    BUILDER_CONFIGS = [PairedChipsConfig(name="default", patch_size=SIZE, classes=synthetic.CHIP_CLASSES)]


class PairedChipsTest(tfds.testing.DatasetBuilderTestCase):
    """TFDS harness: builds from dummy_data (a manifest of 10 chips; one without s1, one with NaN in S1)."""

    DATASET_CLASS = SmallBuilder
    DUMMY_DATA = CHIPS_DUMMY
    SPLITS = {"train": 7, "test": 1}
    SKIP_CHECKSUMS = True

    def test_registered(self):
        self.assertIn(Builder.name, tfds.list_builders(with_community_datasets=False))


def build(manual_dir, data_dir, beam=None, **config):
    """Builds paired chips with the Python API; returns the builder. `beam`: Beam pipeline flags."""
    config = {"name": "t", "patch_size": SIZE, "classes": synthetic.CHIP_CLASSES, **config}
    builder = Builder(config=PairedChipsConfig(**config), data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir),
                                                                             beam_options=beam_options(beam)))
    return builder


def test_segmentation_chips_are_stored_with_their_classes_and_skips_counted(tmp_path):
    builder = build(CHIPS_DUMMY, tmp_path)
    meta = builder.info.metadata
    assert meta["classes"] == ["land", "urban", "water"] and meta["task"] == "segmentation"
    assert meta["s2_bands"] == list(S2_BANDS)
    assert meta["skipped"] == {"train": {"missing_s1": 1, "nodata": 1}}
    examples = {ex["id"].decode(): ex for split in ("train", "test")
                for ex in tfds.as_numpy(builder.as_dataset(split=split))}
    assert sorted(examples) == [f"chip{i:03d}" for i in range(10) if i not in (4, 7)]
    ex = examples["chip005"]
    with rasterio.open(CHIPS_DUMMY / "chip005_mask.tif") as src:
        codes = src.read(1)
    np.testing.assert_array_equal(ex["mask"], np.array([255, 0, 1, 2], np.uint8)[codes])
    with rasterio.open(CHIPS_DUMMY / "chip005_s2.tif") as src:
        np.testing.assert_array_equal(ex["s2"], np.moveaxis(src.read(), 0, -1))
    assert ex["label"] == -1


def test_a_beam_build_writes_the_records_and_skip_counts_of_the_plain_build(tmp_path):
    plain = build(CHIPS_DUMMY, tmp_path / "plain")
    beam = build(CHIPS_DUMMY, tmp_path / "beam", beam=BEAM_IN_PROCESS)
    assert beam.info.metadata == plain.info.metadata
    for split in ("train", "test"):
        assert tfds_records(beam, split) == tfds_records(plain, split)


def test_classification_labels_band_subsets_and_manifest_splits(tmp_path):
    manual = tmp_path / "chips"
    synthetic.generate_chips(manual, 6, SIZE, task="classification", crs="geographic")
    rows = (manual / "manifest.csv").read_text().splitlines()
    (manual / "manifest.csv").write_text("\n".join([rows[0] + ",split"] + [r + (",val" if i < 2 else ",train")
                                                                           for i, r in enumerate(rows[1:])]) + "\n")
    builder = build(manual, tmp_path / "out", classes=["land", "urban", "water"], s2_bands="rgb")
    assert set(builder.info.splits) == {"train", "val"} and builder.info.splits["val"].num_examples == 2
    labels = {r.split(",")[0]: r.split(",")[3] for r in rows[1:]}
    for ex in tfds.as_numpy(builder.as_dataset(split="train")):
        name = ["land", "urban", "water"][ex["label"]]
        assert name == labels[ex["id"].decode()] and (ex["mask"] == ex["label"]).all()
        assert ex["s2"].shape == (SIZE, SIZE, 3)
    assert builder.info.metadata["s2_bands"] == ["B04", "B03", "B02"]


@pytest.mark.parametrize("config, error", [
    ({"classes": None}, r"dummy_data/chip000_mask.tif: the chips have masks but the config lists no classes"),
    ({"classes": ["a", "b"], "on_misaligned": "warp"}, r"config on_misaligned must be one of \['error', 'resample'\]"),
    ({"s2_bands": ["B04", "B13"]}, r"config s2_bands: s2 has no band 'B13'"),
    ({"max_nodata": 2}, r"config max_nodata must be a number in \[0, 1\]"),
])
def test_bad_configs_are_answered_in_one_line(tmp_path, config, error):
    with pytest.raises(UserError, match=error):
        build(CHIPS_DUMMY, tmp_path, **config)


def test_masks_of_the_folder_pattern_need_classes_and_a_rebuild_needs_the_same_arguments(tmp_path):
    from sslrs_tf.datasets import build as build_by_name

    manual = copy_tree(CHIPS_DUMMY, tmp_path / "chips")
    (manual / "manifest.csv").unlink()  # the folder pattern: {id}_s1.tif, {id}_s2.tif, {id}_mask.tif
    with pytest.raises(UserError, match=r"chip000_mask.tif: the chips have masks but the config lists no classes"):
        build(manual, tmp_path / "a", classes=None)
    (manual / "chip005_mask.tif").unlink()  # kept, every pixel ignored
    config = {"name": "mine", "patch_size": SIZE, "classes": ["land", "urban", "water"]}
    built = build_by_name("paired_chips", manual, tmp_path / "b", config)
    examples = {e["id"]: e for s in ("train", "test") for e in tfds.as_numpy(built.as_dataset(split=s))}
    assert (examples[b"chip005"]["mask"] == 255).all() and (examples[b"chip006"]["mask"] != 255).any()
    with pytest.raises(UserError, match=r"paired_chips/mine/1.0.0 in .* was built with classes=\['land', 'urban', "
                                        r"'water'\], not \['dry', 'wet', 'urban'\]; give the config another name"):
        build_by_name("paired_chips", manual, tmp_path / "b", {**config, "classes": ["dry", "wet", "urban"]})


def test_a_label_outside_the_classes_names_its_manifest_line(tmp_path):
    manual = tmp_path / "chips"
    synthetic.generate_chips(manual, 3, SIZE, task="classification")
    with pytest.raises(UserError, match=r"manifest.csv line 2: label '\w+' is not one of the config's classes \['x'\]"):
        build(manual, tmp_path / "out", classes=["x"])


def test_a_misaligned_pair_stops_the_build_or_is_resampled(tmp_path):
    manual = copy_tree(CHIPS_DUMMY, tmp_path / "chips")
    victim = manual / "chip001_s1.tif"
    with rasterio.open(victim, "r+") as dst:
        dst.transform = dst.transform @ dst.transform.translation(2, 0)  # two pixels east
    with pytest.raises(DataError, match=r"chip001_s1.tif: is not on the grid of .*chip001_s2.tif"):
        build(manual, tmp_path / "out")
    builder = build(manual, tmp_path / "out2", on_misaligned="resample", max_nodata=0.1)
    ex = next(e for e in tfds.as_numpy(builder.as_dataset(split="train")) if e["id"] == b"chip001")
    assert np.isnan(ex["s1"][:, :2]).all() and (ex["mask"][:, :2] == 255).all()


def test_the_real_chip_through_a_manifest(tmp_path):
    folder = realdata("sen1floods11_chip")
    (tmp_path / "manifest.csv").write_text(
        f"id,s1,s2,mask,split\nspain,{folder}/Spain_7370579_S1Hand.tif,{folder}/Spain_7370579_S2Hand.tif,"
        f"{folder}/Spain_7370579_LabelHand.tif,train\n")
    builder = build(tmp_path, tmp_path / "out", patch_size=512, classes={0: "dry", 1: "water"})
    ex = next(iter(tfds.as_numpy(builder.as_dataset(split="train"))))
    with rasterio.open(folder / "Spain_7370579_S2Hand.tif") as src:
        np.testing.assert_array_equal(ex["s2"], np.moveaxis(src.read(), 0, -1).astype(np.uint16))
    assert ex["s2"].shape == (512, 512, 13) and set(np.unique(ex["mask"])) == {0, 1, 255}
