"""The input pipeline on paired chips (ChipsSource): crops, labels and band subsets against NumPy, and the
one-line answers for labels or bands a dataset does not have."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from sslrs_tf.data import synthetic
from sslrs_tf.data.pipeline import make_dataset
from sslrs_tf.data.sources import ChipsSource
from sslrs_tf.datasets import open_source
from sslrs_tf.errors import UserError
from tests.data.test_normalization import numpy_reference
from tests.helpers import CHIPS_DUMMY, assert_cut_from_records
from tfds_builders.paired_chips import Builder, PairedChipsConfig

SIZE, CROP = 32, 16
CLASSES = ["land", "urban", "water"]
RGB = {"s2": ["B04", "B03", "B02"]}


def build(manual, data_dir, **config):
    builder = Builder(config=PairedChipsConfig(**{"patch_size": SIZE, **config}), data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return builder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``{name: builder}``: the dummy segmentation chips, 8 classification chips storing only RGB, unlabelled."""
    root = tmp_path_factory.mktemp("chips")
    synthetic.generate_chips(root / "labelled", 8, SIZE, seed=3, task="classification")
    return {"seg": build(CHIPS_DUMMY, root / "tfds", name="seg", classes=synthetic.CHIP_CLASSES),
            "cls": build(root / "labelled", root / "tfds", name="cls", classes=CLASSES, s2_bands="rgb",
                         test_fraction=0.0),
            "none": build(root / "labelled", root / "tfds", name="none", s2_bands="rgb", test_fraction=0.0,
                          manifest="absent.csv")}


def stored(builder, split):
    return {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}


def test_segmentation_crops_and_their_masks_are_those_of_the_stored_chips(built):
    source = open_source("paired_chips", built["seg"].data_dir.split("/paired_chips/")[0], "seg")
    assert isinstance(source, ChipsSource) and source.class_names == tuple(CLASSES)
    assert_cut_from_records(built["seg"], "train", label="segmentation")
    ds = make_dataset(source, "train", crop_size=CROP, batch_size=4, training=False, label="segmentation",
                      with_ids=True)
    records, top = stored(built["seg"], "train"), (SIZE - CROP) // 2
    seen = 0
    for inputs, mask in ds.as_numpy_iterator():
        for i, chip in enumerate(inputs["id"]):
            ex = records[chip.decode()]
            window = np.s_[top:top + CROP, top:top + CROP]
            np.testing.assert_array_equal(mask[i], ex["mask"][window])
            np.testing.assert_allclose(inputs["s2"][i], numpy_reference(ex["s2"][window], "s2", "per_sample_max",
                                                                        None), rtol=1e-5, atol=1e-6)
            seen += 1
    assert seen == len(records) == 7
    multi = make_dataset(source, "train", crop_size=CROP, batch_size=7, training=False, label="multi", with_ids=True)
    inputs, hot = next(multi.as_numpy_iterator())
    for i, chip in enumerate(inputs["id"]):
        crop = records[chip.decode()]["mask"][top:top + CROP, top:top + CROP]
        counts = np.bincount(crop[crop != 255], minlength=3)[:3]  # a class on >= 10 % of the crop's pixels
        np.testing.assert_array_equal(hot[i], (counts >= 0.1 * CROP * CROP).astype(np.float32))
    single = make_dataset(source, "train", crop_size=CROP, batch_size=7, training=False, label="single",
                          with_ids=True)
    for inputs, labels in single.as_numpy_iterator():  # the crop's most frequent class (lowest on ties)
        for i, chip in enumerate(inputs["id"]):
            crop = records[chip.decode()]["mask"][top:top + CROP, top:top + CROP]
            assert labels[i] == np.bincount(crop[crop != 255], minlength=3).argmax()


def test_a_classification_chip_s_single_label_is_its_class(built):
    ds = make_dataset(built["cls"], "train", bands=RGB, crop_size=CROP, batch_size=8, training=False,
                      label="single", with_ids=True)
    records = stored(built["cls"], "train")
    inputs, labels = next(ds.as_numpy_iterator())
    assert [int(y) for y in labels] == [int(records[i.decode()]["label"]) for i in inputs["id"]]
    hot = next(make_dataset(built["cls"], "train", bands=RGB, crop_size=CROP, batch_size=8, training=False,
                            label="multi", with_ids=True).as_numpy_iterator())[1]
    np.testing.assert_array_equal(hot, np.eye(3, dtype=np.float32)[labels])  # the chip's class alone
    with pytest.raises(UserError, match=r"has a class per chip \(classification\), no mask to segment"):
        make_dataset(built["cls"], "train", bands=RGB, crop_size=CROP, label="segmentation")


def test_a_dataset_storing_a_band_subset_gives_those_bands_or_zeros_for_the_rest(built):
    ds = make_dataset(built["cls"], "train", bands=RGB, batch_size=8, training=False, with_ids=True)
    inputs = next(ds.as_numpy_iterator())
    records = stored(built["cls"], "train")
    for i, chip in enumerate(inputs["id"]):
        np.testing.assert_allclose(inputs["s2"][i], numpy_reference(records[chip.decode()]["s2"], "s2",
                                                                    "per_sample_max", None), rtol=1e-5, atol=1e-6)
    wanted = {"s2": ["B02", "B03", "B04", "B08"]}
    with pytest.raises(UserError, match=r"paired_chips/cls/1.0.0 has no S2 band B08 \(it has B04, B03, B02\); .*"
                                        r"data.missing_bands: zeros"):
        make_dataset(built["cls"], "train", bands=wanted)
    zeros = next(make_dataset(built["cls"], "train", bands=wanted, missing_bands="zeros", batch_size=8,
                              training=False).as_numpy_iterator())
    np.testing.assert_array_equal(zeros["s2"][..., :3], inputs["s2"][..., ::-1])  # B02, B03, B04 of B04, B03, B02
    assert (zeros["s2"][..., 3] == 0).all()


def test_an_unlabelled_dataset_refuses_labels_and_an_unbuilt_config_is_named(built, tmp_path):
    assert built["none"].info.metadata["task"] is None and "mask" not in built["none"].info.features
    with pytest.raises(UserError, match=r"has no labels: it was built without classes"):
        make_dataset(built["none"], "train", bands=RGB, label="single")
    with pytest.raises(UserError, match=r"dataset paired_chips/mine is not built in .* \(one built with `python -m "
                                        r"sslrs_tf.datasets paired_chips --manual_dir DIR --data_dir .* --config "
                                        r"'\{\"name\": \"mine\", ...\}'`"):
        open_source("paired_chips", tmp_path, "mine")
    with pytest.raises(UserError, match=r"dataset ssl4eo_s12/all is not built in .* \(its configs: l1c, l2a, or one "
                                        r"built with `python -m sslrs_tf.datasets ssl4eo_s12"):
        open_source("ssl4eo_s12", tmp_path, "all")
