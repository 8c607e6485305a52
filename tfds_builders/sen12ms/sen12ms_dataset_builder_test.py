"""Tests of the SEN12MS builder: the TFDS harness on dummy_data, bad input, real files, the `tfds` CLI."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import tensorflow_datasets as tfds
from tensorflow_datasets.core.dataset_info import DatasetInfoFileError

from sslrs_tf.data import labels, layout, synthetic
from sslrs_tf.errors import DataError, UserError
from tests.helpers import (
    BEAM_IN_PROCESS,
    BEAM_TWO_PROCESSES,
    ROOT,
    SEN12MS_DUMMY,
    assert_cut_from_records,
    beam_options,
    copy_tree,
    realdata,
    tfds_records,
)
from tfds_builders.sen12ms import Builder, Sen12msConfig
from tfds_builders.sen12ms.sen12ms_dataset_builder import non_overlapping

SIZE = 32


class SmallBuilder(Builder, skip_registration=True):
    """The real builder with the dummy data's 32 px patches in every config."""

    BUILDER_CONFIGS = [Sen12msConfig(name="all", patch_size=SIZE)] + [
        Sen12msConfig(name=s, seasons=(s,), patch_size=SIZE) for s in layout.SEASONS
    ]


class Sen12msTest(tfds.testing.DatasetBuilderTestCase):
    """TFDS harness: every config builds from dummy_data with the expected split sizes."""

    DATASET_CLASS = SmallBuilder
    DUMMY_DATA = SEN12MS_DUMMY
    BUILDER_CONFIG_NAMES_TO_TEST = ["all"]
    # 12 triplets: one without s2 and one with NaN in S1 are skipped; the
    # hold-out is the one scene (of four) with the smallest hash.
    SPLITS = {"train": 7, "holdout": 3}
    SKIP_CHECKSUMS = True

    def test_registered(self):
        # SmallBuilder is deliberately unregistered; the real builder must be.
        self.assertIn(Builder.name, tfds.list_builders(with_community_datasets=False))


def build(manual_dir, data_dir, beam=None, **config):
    """Builds SEN12MS with the Python API; returns the builder. `beam`: Beam pipeline options (a list of flags)."""
    config = {"name": "t", "patch_size": SIZE, **config}
    builder = Builder(config=Sen12msConfig(**config), data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir),
                                                                             beam_options=beam_options(beam)))
    return builder


def examples(builder, split):
    return list(tfds.as_numpy(builder.as_dataset(split=split)))


def s2_of(rel_s1):
    return rel_s1.replace("_s1_", "_s2_").replace("/s1_", "/s2_")


def test_skipped_samples_are_counted_printed_and_kept(tmp_path, capsys):
    builder = build(SEN12MS_DUMMY, tmp_path)
    skipped = builder.info.metadata["skipped"]
    assert sum(n for split in skipped.values() for n in split.values()) == 2
    reasons = {r: n for split in skipped.values() for r, n in split.items()}
    assert reasons == {"missing_s2": 1, "s1_nan": 1}
    assert "skipped 2 sample(s)" in capsys.readouterr().out
    # Kept with the dataset: a fresh reader sees the same counts.
    reread = tfds.builder_from_directory(builder.data_dir)
    assert reread.info.metadata["skipped"] == skipped
    ids = {ex["id"].decode() for split in ("train", "holdout") for ex in examples(reread, split)}
    assert len(ids) == 10
    for ex in examples(reread, "train"):
        assert np.isfinite(ex["s1"]).all()


def test_stored_values_are_the_raw_file_values(tmp_path):
    builder = build(SEN12MS_DUMMY, tmp_path)
    ex = examples(builder, "train")[0]
    season = layout.SEASONS[ex["season"]]
    for kind in ("s1", "s2", "lc"):
        path = SEN12MS_DUMMY / layout.sen12ms_path(season, kind, ex["scene"], ex["patch"])
        with rasterio.open(path) as src:
            np.testing.assert_array_equal(ex[kind], np.moveaxis(src.read(), 0, -1))
    assert ex["s1"].dtype == np.float32 and ex["s2"].dtype == np.uint16 and ex["lc"].dtype == np.uint8


def test_an_unlabelled_build_stores_the_same_s1_and_s2_without_lc_and_needs_no_lc_file(tmp_path):
    from sslrs_tf.data.pipeline import make_dataset

    labelled = build(SEN12MS_DUMMY, tmp_path / "a")
    manual = copy_tree(SEN12MS_DUMMY, tmp_path / "no_lc")
    for folder in manual.glob("*/lc_*"):
        shutil.rmtree(folder)
    unlabelled = build(manual, tmp_path / "b", labels=False)
    assert "lc" not in unlabelled.info.features and unlabelled.info.metadata["skipped"] == \
        labelled.info.metadata["skipped"]
    for split in ("train", "holdout"):
        want = {ex.features.feature["id"].bytes_list.value[0]: ex for ex in tfds_records(labelled, split)}
        got = tfds_records(unlabelled, split)
        assert len(got) == len(want)
        for ex in got:
            other = want[ex.features.feature["id"].bytes_list.value[0]]
            assert set(ex.features.feature) == set(other.features.feature) - {"lc"}
            for key in ex.features.feature:
                assert ex.features.feature[key] == other.features.feature[key]
    # The pipeline reads it as it reads the labelled build, and says why it has no labels.
    args = dict(crop_size=24, batch_size=4, training=False, with_ids=True)
    batch, same = (next(make_dataset(b, "train", **args).as_numpy_iterator()) for b in (unlabelled, labelled))
    for key in ("id", "s1", "s2"):
        np.testing.assert_array_equal(batch[key], same[key])
    with pytest.raises(UserError, match="has no 'lc' labels: it was built without labels"):
        make_dataset(unlabelled, "train", label="single")
    assert_cut_from_records(unlabelled, "train")


def test_holdout_is_grouped_by_scene_and_keys_are_deterministic(tmp_path):
    a = build(SEN12MS_DUMMY, tmp_path / "a")
    b = build(SEN12MS_DUMMY, tmp_path / "b")
    scenes = {split: {(ex["season"], ex["scene"]) for ex in examples(a, split)} for split in ("train", "holdout")}
    assert scenes["holdout"] and not scenes["train"] & scenes["holdout"]
    for split in ("train", "holdout"):
        assert [ex["id"] for ex in examples(a, split)] == [ex["id"] for ex in examples(b, split)]


def test_the_holdout_is_chosen_among_scenes_with_a_complete_triplet(tmp_path, capsys):
    # The scene a full build holds out loses its S2 files: its samples are skipped (counted in train), and
    # another scene is held out. With a single complete scene left, the build has no hold-out and says so.
    first = build(SEN12MS_DUMMY, tmp_path / "first")
    ((season, scene),) = {(ex["season"], ex["scene"]) for ex in examples(first, "holdout")}
    manual = tmp_path / "manual"
    copy_tree(SEN12MS_DUMMY, manual)
    for f in (manual / layout.SEASON_FOLDERS[layout.SEASONS[season]] / f"s2_{scene}").iterdir():
        f.unlink()
    builder = build(manual, tmp_path / "out")
    held = {(ex["season"], ex["scene"]) for ex in examples(builder, "holdout")}
    assert held and (season, scene) not in held
    assert builder.info.metadata["skipped"]["train"]["missing_s2"] >= 3
    kept = sorted(held)[0]
    for folder in manual.glob("ROIs*/s2_*"):  # every scene but that one loses its S2 files
        if folder != manual / layout.SEASON_FOLDERS[layout.SEASONS[kept[0]]] / f"s2_{kept[1]}":
            shutil.rmtree(folder)
    builder = build(manual, tmp_path / "out_one")
    assert set(builder.info.splits) == {"train"}
    assert "no holdout split: 1 of the 4 scenes have a complete s1/s2/lc triplet" in capsys.readouterr().out
    assert {(ex["season"], ex["scene"]) for ex in examples(builder, "train")} == {kept}


def test_season_and_scene_fraction_subsets(tmp_path):
    world = tmp_path / "world"
    synthetic.generate_sen12ms(world, patches=160, size=SIZE, seed=1)
    spring = build(world, tmp_path / "spring", seasons=["spring"], holdout_fraction=0.0)
    got = examples(spring, "train")
    assert got and {layout.SEASONS[ex["season"]] for ex in got} == {"spring"}
    assert "holdout" not in spring.info.splits
    full = build(world, tmp_path / "full", holdout_fraction=0.0)
    half = build(world, tmp_path / "half", holdout_fraction=0.0, scene_fraction=0.4)
    scenes = lambda b: {(ex["season"], ex["scene"]) for ex in examples(b, "train")}  # noqa: E731
    assert scenes(half) and scenes(half) < scenes(full)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "cannot be read as a GeoTIFF"),
        ("three_bands", "has 3 band(s), expected 2 (VV, VH)"),
        ("float_s2", "has dtype float32, expected uint16 or int16"),
        ("twelve_bands", "has 12 band(s), expected 13 (B01, B02, B03, B04, B05, B06, B07, B08, B8A, B09, B10, "
                         "B11, B12) for a s2 file"),
        ("igbp_beyond_17", "has IGBP (band 1) values outside its classes 0..17 (200; 0 = no data) in 1 pixel(s)"),
    ],
)
def test_broken_file_stops_the_build_with_one_line(tmp_path, damage, message):
    manual = copy_tree(SEN12MS_DUMMY, tmp_path / "manual")
    victim = next(manual.rglob({"three_bands": "*_s1_*.tif", "igbp_beyond_17": "*_lc_*.tif"}.get(damage, "*_s2_*.tif")))
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:300])
    elif damage == "three_bands":
        synthetic.write_geotiff(victim, np.zeros((SIZE, SIZE, 3), np.float32), (0, 0), 32632)
    elif damage == "igbp_beyond_17":
        with rasterio.open(victim) as src:
            profile, lc = src.profile, src.read()
        lc[0, 0, 0] = 200
        with rasterio.open(victim, "w", **profile) as dst:
            dst.write(lc)
    elif damage == "twelve_bands":  # an S2 export without one band (B10, say)
        synthetic.write_geotiff(victim, np.ones((SIZE, SIZE, 12), np.uint16), (0, 0), 32632)
    else:
        synthetic.write_geotiff(victim, np.zeros((SIZE, SIZE, 13), np.float32), (0, 0), 32632)
    with pytest.raises(DataError) as err:
        build(manual, tmp_path / "out")
    text = str(err.value)
    assert "\n" not in text and str(victim) in text and message in text
    # A failed build leaves nothing that loads as a dataset.
    assert not list((tmp_path / "out").rglob("dataset_info.json"))
    with pytest.raises(DatasetInfoFileError):
        tfds.builder_from_directory(str(tmp_path / "out" / "sen12ms" / "t" / "1.0.0"))


def test_on_error_skip_turns_a_broken_file_into_a_count(tmp_path):
    manual = copy_tree(SEN12MS_DUMMY, tmp_path / "manual")
    victim = next(manual.rglob("*_s2_*.tif"))
    victim.write_bytes(b"not a tiff")
    builder = build(manual, tmp_path / "out", on_error="skip")
    reasons = {r: n for split in builder.info.metadata["skipped"].values() for r, n in split.items()}
    assert reasons["bad_file"] == 1
    assert sum(s.num_examples for s in builder.info.splits.values()) == 9


def test_empty_and_misnamed_manual_dir_say_which_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"manual_dir .*empty.*expected ROIs1158_spring"):
        build(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "misnamed" / "sen12ms_spring").mkdir(parents=True)
    with pytest.raises(UserError, match=r"has no folder ROIs1158_spring \(season spring\)"):
        build(tmp_path / "misnamed", tmp_path / "out")
    with pytest.raises(UserError, match="does not exist"):
        build(tmp_path / "nowhere", tmp_path / "out")


def test_a_split_with_no_usable_sample_is_a_clear_error(tmp_path):
    manual = tmp_path / "manual"
    s1 = manual / layout.sen12ms_path("spring", "s1", 1, 1)
    synthetic.write_geotiff(s1, np.full((SIZE, SIZE, 2), np.nan, np.float32), (0, 0), 32632)
    with pytest.raises(UserError, match=r"no usable sample .*missing_s2"):
        build(manual, tmp_path / "out", seasons=["spring"])


@pytest.mark.slow
def test_a_beam_build_in_two_processes_writes_the_records_of_the_plain_build(tmp_path, monkeypatch):
    manual = copy_tree(SEN12MS_DUMMY, tmp_path / "manual")
    next(manual.rglob("*_s2_*.tif")).write_bytes(b"not a tiff")  # a bad_file, besides a missing_s2 and an s1_nan
    with monkeypatch.context() as without_beam:  # the plain build needs no Beam
        for name in [m for m in sys.modules if m.split(".")[0] == "apache_beam"] + ["apache_beam"]:
            without_beam.setitem(sys.modules, name, None)
        plain = build(manual, tmp_path / "plain", on_error="skip")
    beam = build(manual, tmp_path / "beam", beam=BEAM_TWO_PROCESSES, on_error="skip")
    assert {k: v.num_examples for k, v in beam.info.splits.items()} == \
        {k: v.num_examples for k, v in plain.info.splits.items()} == {"train": 6, "holdout": 3}
    assert beam.info.metadata == plain.info.metadata
    assert plain.info.metadata["skipped"] == {"train": {"bad_file": 1, "missing_s2": 1, "s1_nan": 1}}
    for split in ("train", "holdout"):
        assert beam.info.splits[split].shard_lengths == plain.info.splits[split].shard_lengths
        assert tfds_records(beam, split) == tfds_records(plain, split)
        assert [ex["id"] for ex in examples(beam, split)] == [ex["id"] for ex in examples(plain, split)]


def test_a_beam_build_stops_at_a_broken_file_or_an_empty_split_with_one_line(tmp_path):
    manual = copy_tree(SEN12MS_DUMMY, tmp_path / "manual")
    victim = next(manual.rglob("*_s2_*.tif"))
    victim.write_bytes(victim.read_bytes()[:300])
    with pytest.raises(UserError) as err:
        build(manual, tmp_path / "out", beam=BEAM_IN_PROCESS)
    with pytest.raises(DataError) as plain:
        build(manual, tmp_path / "out_plain")
    # (GDAL's reason names the in-memory file rasterio read through: a random name per read)
    same = [re.sub(r"[0-9a-f-]{36}\.tif", "FILE", str(e.value)) for e in (err, plain)]
    assert same[0] == same[1] and same[0].startswith(f"{victim}: cannot be read as a GeoTIFF")
    assert not list((tmp_path / "out").rglob("dataset_info.json"))
    empty = tmp_path / "empty"
    synthetic.write_geotiff(empty / layout.sen12ms_path("spring", "s1", 1, 1), np.full((SIZE, SIZE, 2), np.nan,
                                                                                       np.float32), (0, 0), 32632)
    with pytest.raises(UserError, match=r"split train has no usable sample; build without Beam options to see"):
        build(empty, tmp_path / "out_empty", beam=BEAM_IN_PROCESS, seasons=["spring"])


def test_bad_config_values_are_named():
    with pytest.raises(UserError, match="seasons"):
        Sen12msConfig(name="x", seasons=["autumn"])
    with pytest.raises(UserError, match="scene_fraction"):
        Sen12msConfig(name="x", scene_fraction=0)
    with pytest.raises(UserError, match="non_overlapping must be true or false. Received: non_overlapping='false'"):
        Sen12msConfig(name="x", non_overlapping="false")
    with pytest.raises(UserError, match="labels must be true or false. Received: labels=0"):
        Sen12msConfig(name="x", labels=0)


def test_real_sen12ms_patch_with_missing_s2(tmp_path):
    real = realdata("sen12ms_p30")
    manual = copy_tree(real, tmp_path / "manual")
    # One complete synthetic triplet beside the real one, so the build has an example to write.
    scene = synthetic.Scene(np.random.default_rng(0), "spring", 256).patch(0)
    for kind in layout.SEN12MS_KINDS:
        synthetic.write_geotiff(manual / layout.sen12ms_path("spring", kind, 2, 1), scene[kind], (5e5, 9e6), 32737)
    builder = build(manual, tmp_path / "out", patch_size=256, holdout_fraction=0.0, seasons=["spring"])
    assert builder.info.metadata["skipped"] == {"train": {"missing_s2": 1}}
    assert builder.info.metadata["skipped_examples"]["missing_s2"][0].endswith("ROIs1158_spring_s2_1_p30.tif")
    assert builder.info.splits["train"].num_examples == 1


def test_real_lc_maps_to_the_eight_classes():
    from sslrs_tf.data.geotiff import read_raster

    lc = read_raster(realdata("sen12ms_p30", "ROIs1158_spring", "lc_1", "ROIs1158_spring_lc_1_p30.tif"), "lc", 256)
    igbp = lc[..., 0]
    classes = labels.igbp_to_classes(igbp).numpy()
    assert set(np.unique(igbp)) == {4, 5, 8, 9}
    assert (classes[np.isin(igbp, [4, 5])] == 0).all()  # forests -> Forest
    assert (classes[np.isin(igbp, [8, 9])] == labels.IGNORE).all()  # savannas -> ignored


def test_real_sen1floods11_chip_int16_s2_outliers_and_epsg4326(tmp_path):
    chip = realdata("sen1floods11_chip")
    manual = tmp_path / "manual"
    sources = {"s1": "Spain_7370579_S1Hand.tif", "s2": "Spain_7370579_S2Hand.tif"}
    # Cut the 512 px chip into four SEN12MS-sized patches, keeping its CRS, dtype and compression.
    for kind, name in sources.items():
        with rasterio.open(chip / name) as src:
            for i in range(4):
                window = rasterio.windows.Window((i % 2) * 256, (i // 2) * 256, 256, 256)
                profile = dict(src.profile, width=256, height=256, transform=src.window_transform(window))
                out = manual / layout.sen12ms_path("summer", kind, 7, i)
                out.parent.mkdir(parents=True, exist_ok=True)
                with rasterio.open(out, "w", **profile) as dst:
                    dst.write(src.read(window=window))
    for i in range(4):
        lc = np.full((256, 256, 4), 10, np.uint8)
        synthetic.write_geotiff(manual / layout.sen12ms_path("summer", "lc", 7, i), lc, (0, 0), 4326)
    builder = build(manual, tmp_path / "out", patch_size=256, holdout_fraction=0.0, seasons=["summer"])
    got = {ex["patch"]: ex for ex in examples(builder, "train")}
    skipped = builder.info.metadata["skipped"].get("train", {})
    assert len(got) + sum(skipped.values()) == 4
    with rasterio.open(chip / sources["s2"]) as src:
        assert src.dtypes[0] == "int16" and src.crs.to_epsg() == 4326
        raw_s2 = np.moveaxis(src.read(), 0, -1)
    with rasterio.open(chip / sources["s1"]) as src:
        raw_s1 = np.moveaxis(src.read(), 0, -1)
    for i, ex in got.items():
        r, c = (i // 2) * 256, (i % 2) * 256
        np.testing.assert_array_equal(ex["s2"], np.clip(raw_s2[r : r + 256, c : c + 256], 0, None).astype(np.uint16))
        np.testing.assert_array_equal(ex["s1"], raw_s1[r : r + 256, c : c + 256])
    # The +25 dB outliers are stored as they are: clipping is a runtime choice.
    assert max(ex["s1"].max() for ex in got.values()) > 25


def test_real_chip_of_the_wrong_size_is_refused(tmp_path):
    chip = realdata("sen1floods11_chip")
    manual = tmp_path / "manual"
    target = manual / layout.sen12ms_path("spring", "s1", 1, 1)
    target.parent.mkdir(parents=True)
    target.write_bytes((chip / "Spain_7370579_S1Hand.tif").read_bytes())
    for kind in ("s2", "lc"):
        other = manual / layout.sen12ms_path("spring", kind, 1, 1)
        other.parent.mkdir(parents=True)
        other.write_bytes((chip / f"Spain_7370579_{'S2Hand' if kind == 's2' else 'S1Hand'}.tif").read_bytes())
    with pytest.raises(DataError, match=r"is 512 x 512 px, expected 256 x 256"):
        build(manual, tmp_path / "out", patch_size=256, seasons=["spring"], holdout_fraction=0.0)


def test_dummy_data_is_what_the_generator_script_writes(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tfds_builders" / "make_dummy_data.py"), "--root", str(tmp_path)], check=True)
    fresh = sorted(p.relative_to(tmp_path / "sen12ms" / "dummy_data") for p in (tmp_path / "sen12ms" / "dummy_data").rglob("*.tif"))
    committed = sorted(p.relative_to(SEN12MS_DUMMY) for p in SEN12MS_DUMMY.rglob("*.tif"))
    assert fresh == committed
    for rel in committed:
        assert (tmp_path / "sen12ms" / "dummy_data" / rel).read_bytes() == (SEN12MS_DUMMY / rel).read_bytes(), rel


@pytest.mark.slow
def test_tfds_command_line_builds_a_subset_in_one_flag_with_beam_in_two_processes(tmp_path):
    tfds_cli = pathlib.Path(sys.executable).with_name("tfds")
    config = json.dumps({"name": "spring_small", "seasons": ["spring"], "patch_size": SIZE, "holdout_fraction": 0})
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [str(tfds_cli), "build", str(ROOT / "tfds_builders" / "sen12ms"), "--manual_dir", str(SEN12MS_DUMMY),
         "--data_dir", str(tmp_path), "--config", config,
         "--beam_pipeline_options=runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "sen12ms/spring_small/1.0.0: skipped 1 sample(s) — train: 1 missing_s2" in run.stdout
    # Beam's worker processes ran (their start-up lines on standard error).
    assert run.stderr.count("Python sdk harness starting") >= 2, run.stderr[-2000:]
    built = tfds.builder_from_directory(str(tmp_path / "sen12ms" / "spring_small" / "1.0.0"))
    got = list(tfds.as_numpy(built.as_dataset(split="train")))
    assert got and {layout.SEASONS[ex["season"]] for ex in got} == {"spring"}


def brute_force_non_overlapping(footprints):
    """Each footprint against every kept one, in plain NumPy: the reference for non_overlapping."""
    kept, boxes = [], []
    for key, crs, box in footprints:
        b = np.array(box)
        if not any(c == crs and min(b[2], o[2]) - max(b[0], o[0]) > 1e-9 and min(b[3], o[3]) - max(b[1], o[1]) > 1e-9
                   for c, o in boxes):
            kept.append(key)
            boxes.append((crs, b))
    return kept


def test_non_overlapping_is_first_come_first_served_as_a_brute_force_check():
    rng = np.random.default_rng(0)
    footprints = []
    for i in range(400):
        side = rng.choice([2560.0, 1280.0, 640.0])  # mixed sizes: the grid must still find every neighbour
        x, y = rng.integers(0, 40) * 640.0 + 5e5, rng.integers(0, 40) * 640.0 + 4e6
        footprints.append((i, f"EPSG:{rng.choice([32631, 32632])}", (x, y, x + side, y + side)))
    kept = non_overlapping(footprints)
    assert kept == brute_force_non_overlapping(footprints) and 20 < len(kept) < 400
    # Touching edges are no overlap: a 2 x 2 grid of abutting patches keeps all four.
    grid = [(k, "c", (c * 10.0, r * 10.0, c * 10.0 + 10, r * 10.0 + 10)) for k, (r, c) in enumerate(
        [(0, 0), (0, 1), (1, 0), (1, 1)])]
    assert non_overlapping(grid) == [0, 1, 2, 3]


def write_triplet(root, season, scene, patch, origin, epsg, size=SIZE):
    """An s1/s2/lc triplet of random valid values whose footprint starts at `origin` (x, y of the top left)."""
    rng = np.random.default_rng([scene, patch])
    arrays = {"s1": rng.uniform(-25, 0, (size, size, 2)).astype(np.float32),
              "s2": rng.integers(0, 10000, (size, size, 13)).astype(np.uint16),
              "lc": rng.integers(1, 18, (size, size, 4)).astype(np.uint8)}
    for kind, array in arrays.items():
        synthetic.write_geotiff(root / layout.sen12ms_path(season, kind, scene, patch), array, origin, epsg)


def test_nonoverlapping_config_keeps_the_patches_of_known_overlap(tmp_path):
    # Scene 1: a 3 x 3 grid of 32 px patches at a stride of 16 px (as SEN12MS tiles at half a patch), ids 1-9 row
    # by row: p1 comes first, p2 overlaps it, p3 does not, ...: the corners are kept. Scene 2 (same CRS, later in
    # the order) has p1 over scene 1's p9 and p2 far away; scene 3 lies at scene 1's coordinates in another CRS.
    root, x0, y0 = tmp_path / "manual", 500000.0, 4000000.0
    for i in range(9):
        r, c = divmod(i, 3)
        write_triplet(root, "spring", 1, i + 1, (x0 + c * 160, y0 - r * 160), 32631)
    write_triplet(root, "spring", 2, 1, (x0 + 2 * 160 + 80, y0 - 2 * 160 - 80), 32631)
    write_triplet(root, "spring", 2, 2, (x0 + 5000, y0), 32631)
    write_triplet(root, "spring", 3, 1, (x0, y0), 32632)
    builder = build(root, tmp_path / "tfds", name="spring_nonoverlapping", seasons=["spring"], holdout_fraction=0.0,
                    non_overlapping=True)
    ids = sorted(ex["id"].decode() for ex in examples(builder, "train"))
    assert ids == sorted(["spring_1_p1", "spring_1_p3", "spring_1_p7", "spring_1_p9", "spring_2_p2", "spring_3_p1"])
    # The shipped config of that name builds all seasons this way.
    shipped = {c.name: c for c in Builder.BUILDER_CONFIGS}["nonoverlapping"]
    assert shipped.non_overlapping and shipped.seasons == layout.SEASONS
    everything = build(root, tmp_path / "tfds_all", name="all_patches", seasons=["spring"], holdout_fraction=0.0)
    assert len(examples(everything, "train")) == 12
