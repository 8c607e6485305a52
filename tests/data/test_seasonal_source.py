"""The input pipeline on a dataset storing a location's seasons (SSL4EO-S12): each training sample is one
season's S1/S2 pair (or two seasons with season_pairs: any), found again in the stored record by NumPy."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from sslrs_tf.data.pipeline import make_dataset
from sslrs_tf.errors import UserError
from tests.data.test_normalization import numpy_reference
from tests.helpers import ROOT, assert_cut_from_records
from tfds_builders.ssl4eo_s12 import Builder, Ssl4eoS12Config

SIZE, CROP = 12, 8


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    builder = Builder(config=Ssl4eoS12Config(name="t", patch_size=SIZE, holdout_fraction=0.0),
                      data_dir=str(tmp_path_factory.mktemp("ssl4eo")))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(ROOT / "tfds_builders" / "ssl4eo_s12" / "dummy_data")))
    return builder, {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split="train"))}


def where(crop, stored, modality):
    """``(season, top, left)`` of every window of `stored` ([T, H, W, C]) whose normalised crop is `crop`."""
    found = []
    for t in range(stored.shape[0]):
        for top in range(SIZE - CROP + 1):
            for left in range(SIZE - CROP + 1):
                window = stored[t, top:top + CROP, left:left + CROP]
                if np.allclose(crop, numpy_reference(window, modality, "per_sample_max", None), atol=1e-5):
                    found.append((t, top, left))
    return found


@pytest.mark.parametrize("pairs", ["same", "any"])
def test_a_training_sample_is_a_season_s_aligned_crop(built, pairs):
    builder, records = built
    seasons = []
    args = dict(crop_size=CROP, batch_size=2, season_pairs=pairs, with_ids=True)
    batches = list(make_dataset(builder, "train", epochs=6, **args).as_numpy_iterator())
    # The same crops and seasons in the same places, read with per_patch_max, or resumed at epoch 3.
    by_patch = list(make_dataset(builder, "train", epochs=6, normalization="per_patch_max", **args).as_numpy_iterator())
    resumed = list(make_dataset(builder, "train", start_epoch=3, epochs=3, **args).as_numpy_iterator())
    for batch, other in zip(batches[3:], resumed, strict=True):
        for key in ("id", "s1", "s2"):
            np.testing.assert_array_equal(batch[key], other[key])
    for batch, patch_scaled in zip(batches, by_patch, strict=True):
        for i, chip in enumerate(batch["id"]):
            ex = records[chip.decode()]
            s1, s2 = where(batch["s1"][i], ex["s1"], "s1"), where(batch["s2"][i], ex["s2"], "s2")
            assert len(s1) == 1 and len(s2) == 1  # found once: one season's crop, no mixture
            assert s1[0][1:] == s2[0][1:]  # one window for both sensors
            seasons.append((s1[0][0], s2[0][0]))
            t, top, left = s2[0]  # per_patch_max: divided by the maxima stored for that season
            window = np.clip(ex["s2"][t, top:top + CROP, left:left + CROP].astype(np.float64), 0, 10000)
            np.testing.assert_allclose(patch_scaled["s2"][i], window / np.minimum(ex["s2_max"][t], 10000), rtol=1e-6)
    assert len({s for s, _ in seasons}) > 1  # the season changes from epoch to epoch
    same = [a == b for a, b in seasons]
    assert all(same) if pairs == "same" else not all(same)


def test_evaluation_reads_the_first_season_s_centre_and_a_bad_choice_is_refused(built):
    builder, records = built
    batch = next(make_dataset(builder, "train", crop_size=CROP, batch_size=2, training=False,
                              with_ids=True).as_numpy_iterator())
    top = (SIZE - CROP) // 2
    for i, chip in enumerate(batch["id"]):
        window = records[chip.decode()]["s2"][0, top:top + CROP, top:top + CROP]
        np.testing.assert_allclose(batch["s2"][i], numpy_reference(window, "s2", "per_sample_max", None), atol=1e-5)
    # per_patch_max divides by the stored maxima of the season read (here the first).
    batch = next(make_dataset(builder, "train", crop_size=CROP, batch_size=2, training=False, with_ids=True,
                              normalization="per_patch_max").as_numpy_iterator())
    for i, chip in enumerate(batch["id"]):
        ex = records[chip.decode()]
        window = np.clip(ex["s2"][0, top:top + CROP, top:top + CROP].astype(np.float64), 0, 10000)
        np.testing.assert_allclose(batch["s2"][i], window / np.minimum(ex["s2_max"][0], 10000), rtol=1e-6)
    assert_cut_from_records(builder, "train", normalization="per_patch_max")  # all four seasons' bytes, located
    with pytest.raises(UserError, match=r"season_pairs must be one of \['same', 'any'\]. Received: season_pairs='all'"):
        make_dataset(builder, "train", season_pairs="all")
    with pytest.raises(UserError, match=r"missing_bands must be one of \['error', 'zeros'\]. Received: missing_bands='drop'"):
        make_dataset(builder, "train", missing_bands="drop")
