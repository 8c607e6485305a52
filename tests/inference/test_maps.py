"""``python -m sslrs_tf.predict``: maps of whole scenes on the S2 grid, S1 warped onto it window by window (against
a NumPy bilinear reference), tiles that leave no seams, a classifier's tile grid, nodata, one-line errors."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_points

from sslrs_tf.data.bands import S1_BANDS
from sslrs_tf.inference.embeddings import embed_scene
from sslrs_tf.inference.maps import COLOURS, blend_window, tile_starts
from sslrs_tf.inference.runs import open_run
from sslrs_tf.inference.scenes import Scene
from sslrs_tf.predict import main as predict_main
from tests.helpers import ROOT
from tests.inference.fake_scenes import ORIGIN, scene_arrays, write_s1, write_s1_geographic, write_s2

HEIGHT, WIDTH, MARGIN = 120, 152, 8


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 120 x 152 px scene: S2 (UTM, a nodata block), S1 on the same grid, and S1 in EPSG:4326."""
    root = tmp_path_factory.mktemp("scene")
    s2, _ = scene_arrays(HEIGHT, WIDTH)
    s2[:, 50:70, 100:130] = 0  # nodata
    _, s1_big = scene_arrays(HEIGHT + 2 * MARGIN, WIDTH + 2 * MARGIN, seed=1)
    return {"s2": write_s2(root / "s2.tif", s2),
            "s1": write_s1(root / "s1.tif", s1_big[:, MARGIN:-MARGIN, MARGIN:-MARGIN]),
            "s1_geo": write_s1_geographic(root / "s1_geo.tif", s1_big, MARGIN), "root": root}


@pytest.fixture(scope="module")
def segmenter(small_world, tmp_path_factory):
    """A tiny segmentation run: ResNet-10 encoders of S1 and S2 with their decoder, 32 px crops."""
    from train import main as train_main

    run = tmp_path_factory.mktemp("segmenter") / "run"
    assert train_main(["--config", str(ROOT / "configs" / "finetune_tiny.yaml"), f"run.dir={run}", *small_world,
                       "model.method=segmenter", "data.label=segmentation", "train.epochs=1",
                       "train.steps_per_epoch=2", "optimizer.encoder_lr=null"]) == 0
    return run


def test_tiles_reach_the_edges_and_the_blend_window_peaks_in_the_middle():
    assert tile_starts(100, 32, 24) == [0, 24, 48, 68] and tile_starts(32, 32, 24) == [0]
    assert tile_starts(20, 32, 8) == [0]
    for length, tile, stride in [(100, 32, 24), (257, 64, 48), (64, 64, 64)]:
        starts = tile_starts(length, tile, stride)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered.all() and starts[-1] + tile == length and np.all(np.diff(starts) <= stride)
    w = blend_window(32)
    assert w.shape == (32, 32) and w.min() > 0 and np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])
    assert w[15:17, 15:17].min() == w.max() and w[0, 0] == w.min()


def numpy_bilinear(path, crs, transform, rows, cols):
    """Bilinear samples of the raster at `path` at the centres of grid pixels (`rows`, `cols`) of `transform` in
    `crs`: the points moved with PROJ, interpolated in NumPy (pixel centres at +0.5)."""
    with rasterio.open(path) as src:
        data, inverse = src.read(), ~src.transform
        xs, ys = rasterio.transform.xy(transform, rows.ravel(), cols.ravel(), offset="center")
        lon, lat = warp_points(crs, src.crs, xs, ys)
        c, r = inverse @ (np.asarray(lon), np.asarray(lat))
    c, r = c - 0.5, r - 0.5
    c0, r0 = np.floor(c).astype(int), np.floor(r).astype(int)
    fc, fr = c - c0, r - r0
    value = sum(data[:, r0 + dr, c0 + dc] * np.where(dr, fr, 1 - fr) * np.where(dc, fc, 1 - fc)
                for dr in (0, 1) for dc in (0, 1))
    return np.moveaxis(value, 0, -1).reshape(*rows.shape, data.shape[0])


def test_s1_in_lon_lat_is_warped_onto_the_s2_grid_window_by_window(scene):
    with Scene({"s1": scene["s1_geo"], "s2": scene["s2"]}, {"s1": S1_BANDS, "s2": ("B04", "B08")}) as opened:
        assert opened.crs == "EPSG:32633" and opened.transform == from_origin(*ORIGIN, 10.0, 10.0)
        raw, valid = opened.read(40, 60, 32)
        edge, edge_valid = opened.read(HEIGHT - 20, WIDTH - 20, 32)  # reaches past the scene: invalid there
    rows, cols = np.mgrid[40:72, 60:92]
    reference = numpy_bilinear(scene["s1_geo"], "EPSG:32633", opened.transform, rows, cols)
    np.testing.assert_allclose(raw["s1"], reference, rtol=0, atol=2e-3)
    with rasterio.open(scene["s2"]) as src:
        np.testing.assert_array_equal(raw["s2"], np.moveaxis(src.read([4, 8]), 0, -1)[40:72, 60:92])
    assert valid.all() and edge_valid[:20, :20].all() and not edge_valid[20:].any() and not edge_valid[:, 20:].any()
    assert np.isnan(edge["s2"][20:]).all() and np.isnan(edge["s1"][:, 20:]).all()


@pytest.mark.slow
def test_a_segmentation_map_is_on_the_s2_grid_with_colours_class_names_and_nodata(segmenter, scene, tmp_path, capsys):
    out = tmp_path / "map.tif"
    assert predict_main(["--run", str(segmenter), "--s2", str(scene["s2"]), "--s1", str(scene["s1_geo"]),
                         "--out", str(out), "--probabilities"]) == 0
    assert f"written: {out} (152 x 120 px, EPSG:32633" in capsys.readouterr().out
    classes = open_run(segmenter).class_names
    with rasterio.open(out) as m, rasterio.open(tmp_path / "map_probabilities.tif") as p, \
            rasterio.open(scene["s2"]) as s2:
        for written in (m, p):
            assert (written.crs, written.transform, written.width, written.height) == \
                (s2.crs, s2.transform, s2.width, s2.height)
            assert written.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and written.compression.name == "deflate"
            assert written.dtypes[0] == "uint8" and written.nodata == 255
            assert json.loads(written.tags()["class_names"]) == list(classes)
        assert m.count == 1 and p.count == len(classes)
        assert m.colormap(1)[0][:3] == tuple(int(COLOURS[0][k:k + 2], 16) for k in (1, 3, 5))
        codes, probs = m.read(1), p.read().astype(int)
    assert (codes[50:70, 100:130] == 255).all() and (probs[:, 50:70, 100:130] == 255).all()
    others = np.ones_like(codes, bool)
    others[50:70, 100:130] = False
    assert (codes[others] < len(classes)).all()
    # The probability bands sum to 1 (x 254, rounded per band) and their argmax is the class band.
    assert np.abs(probs[:, others].sum(0) - 254).max() <= len(classes)
    top = np.sort(probs[:, others], axis=0)
    clear = top[-1] - top[-2] > 1  # not a tie at the bands' resolution
    assert (np.argmax(probs[:, others], 0) == codes[others])[clear].all()


@pytest.mark.slow
def test_a_scene_shifted_by_a_tile_step_gets_the_same_classes_where_the_same_tiles_cover_it(segmenter, scene,
                                                                                          tmp_path):
    # Tiles of 32 px every 24 (overlap 8). The shifted scene starts one step (24 px) further in both directions:
    # its tiles are the first scene's tiles but the first row and column, so away from its first 8 px (which
    # only those tiles reached) every pixel is blended from the same tiles with the same weights.
    with rasterio.open(scene["s2"]) as src:
        s2, transform = src.read(), src.transform
    with rasterio.open(scene["s1"]) as src:
        s1 = src.read()
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    moved = transform @ rasterio.Affine.translation(24, 24)
    write_s2(shifted / "s2.tif", s2[:, 24:, 24:], moved)
    write_s1(shifted / "s1.tif", s1[:, 24:, 24:], moved)
    maps = []
    for folder in (scene["root"], shifted):
        out = tmp_path / f"{folder.name}.tif"
        assert predict_main(["--run", str(segmenter), "--s2", str(folder / "s2.tif"), "--s1", str(folder / "s1.tif"),
                             "--out", str(out), "--overlap", "8", "--batch-size", "1"]) == 0
        with rasterio.open(out) as m:
            maps.append(m.read(1))
    first, second = maps
    np.testing.assert_array_equal(first[32:, 32:], second[8:, 8:])
    assert len(np.unique(first[first != 255])) > 1  # a map, not one class everywhere


def test_batches_split_across_replicas_give_what_one_device_gives(segmenter, scene, two_replicas, tmp_path):
    one, two = open_run(segmenter), open_run(segmenter, distribution=two_replicas)
    assert two.strategy.num_replicas_in_sync == 2 and one.strategy.num_replicas_in_sync == 1
    with Scene({"s1": scene["s1"], "s2": scene["s2"]}, {m: b for m, (b, _) in one.inputs.items()}) as opened:
        read = [opened.read(top, left, 32)[0] for top, left in [(0, 0), (40, 60), (88, 120)]]
        raw = {m: np.stack([r[m] for r in read]) for m in one.inputs}
        # Three tiles over two replicas: the second gets the last tile and a copy of it, whose result is dropped.
        expected = one.predict(raw)
        assert expected.shape == (3, 32, 32, len(one.class_names))
        np.testing.assert_allclose(two.predict(raw), expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(two.predict({m: v[:1] for m, v in raw.items()}), expected[:1], rtol=0, atol=1e-5)
        # Embeddings go the same way (a fine-tuned run's encoders).
        for trained, name in ((one, "one.parquet"), (two, "two.parquet")):
            embed_scene(trained, opened, tmp_path / name, tile=32, batch_size=3)
    tables = [pq.read_table(tmp_path / name) for name in ("one.parquet", "two.parquet")]
    assert tables[0].num_rows == 20 and tables[0].column_names == tables[1].column_names
    for column in tables[0].column_names:
        if column.startswith("embedding_"):
            np.testing.assert_allclose(*(np.stack(t[column].to_numpy(zero_copy_only=False)) for t in tables),
                                       rtol=0, atol=1e-5)


def numpy_per_sample_max(x, low, high):
    """The papers' preparation in NumPy: NaN -> lower bound, clip, shift, divide by each channel's maximum + 1e-5."""
    x = np.clip(np.where(np.isnan(x), low, x.astype(np.float64)), low, high) - low
    return (x / (x.max(axis=(1, 2), keepdims=True) + 1e-5)).astype(np.float32)


@pytest.mark.slow
def test_a_classifier_writes_one_label_per_tile_on_a_coarser_grid(quickstarted, scene, tmp_path):
    run = quickstarted.dir / "single" / "dualsimclr_frozen" / "f0.5" / "seed0"
    out = tmp_path / "tiles.tif"
    assert predict_main(["--run", str(run), "--s2", str(scene["s2"]), "--s1", str(scene["s1"]), "--out", str(out),
                         "--tile", "32"]) == 0
    with rasterio.open(out) as m, rasterio.open(scene["s2"]) as s2_src, rasterio.open(scene["s1"]) as s1_src:
        assert (m.width, m.height) == (5, 4) and m.crs == s2_src.crs  # ceil(152 / 32), ceil(120 / 32)
        assert m.transform == s2_src.transform @ rasterio.Affine.scale(32)
        codes = m.read(1)
        s2, s1 = np.moveaxis(s2_src.read(), 0, -1), np.moveaxis(s1_src.read(), 0, -1)
    trained = open_run(run)
    # Whole tiles inside the scene, against the model on NumPy-prepared input.
    tiles = [(r, c) for r in range(3) for c in range(4)]
    x = {"s1": numpy_per_sample_max(np.stack([s1[32 * r:32 * r + 32, 32 * c:32 * c + 32] for r, c in tiles]),
                                    -25.0, 0.0),
         "s2": numpy_per_sample_max(np.stack([s2[32 * r:32 * r + 32, 32 * c:32 * c + 32] for r, c in tiles]),
                                    0.0, 1e4)}
    expected = np.argmax(trained.model(x, training=False).numpy(), -1)
    got = np.array([codes[r, c] for r, c in tiles])
    # Tile (1, 3) is 38 % nodata: still labelled. (The library hands nodata pixels to the model as NaN, which the
    # normalisation fills with the lower clip bound; NumPy reads the nodata value 0, the same bound.)
    assert codes[1, 3] != 255
    np.testing.assert_array_equal(got, expected)
    # The last row of tiles is 24 of 32 rows inside the scene (75 %): labelled; the last column 24 of 32 too.
    assert (codes[3, :4] != 255).all() and (codes[:3, 4] != 255).all()


def test_predict_errors_are_one_line(pretrained_run, segmenter, scene, tmp_path, capsys):
    far = write_s1(tmp_path / "far.tif", np.zeros((2, 10, 10), np.float32), from_origin(700_000, 4_650_000, 10, 10))
    unplaced = tmp_path / "unplaced.tif"
    with rasterio.open(unplaced, "w", driver="GTiff", width=8, height=8, count=13, dtype="uint16") as dst:
        dst.write(np.ones((13, 8, 8), np.uint16))
    four = write_s2(tmp_path / "four.tif", np.ones((4, 8, 8), np.uint16))
    (tmp_path / "taken.tif").write_bytes(b"")
    s2, s1 = str(scene["s2"]), str(scene["s1"])
    for argv, message in [
        (["--run", str(pretrained_run), "--s2", s2, "--s1", s1],
         f"--run {pretrained_run}: a pre-training run gives embeddings, not classes"),
        (["--run", str(segmenter), "--s2", s2, "--s1", str(far)], f"--s1 {far} does not overlap --s2 {s2}"),
        (["--run", str(segmenter), "--s2", str(unplaced), "--s1", s1], f"{unplaced} has no CRS"),
        (["--run", str(segmenter), "--s2", str(four), "--s1", s1],
         f"--s2 {four} lacks band B05, which the model needs"),
        (["--run", str(segmenter), "--s2", s2], "the model reads S1 and S2: give --s1"),
        (["--run", str(segmenter), "--s2", s2, "--s1", s1, "--s2-bands", "B02,B03"], "--s2-bands names 2 bands"),
    ]:
        assert predict_main([*argv, "--out", str(tmp_path / "m.tif")]) == 2, message
        err = capsys.readouterr().err
        assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert predict_main(["--run", str(segmenter), "--s2", s2, "--s1", s1, "--out", str(tmp_path / "taken.tif")]) == 2
    assert capsys.readouterr().err == f"error: --out: {tmp_path / 'taken.tif'} exists; choose another path or pass " \
                                      "--overwrite\n"
    assert not (tmp_path / "m.tif").exists()


def test_the_real_sentinel_2_chip_int16_in_lon_lat_goes_through(quickstarted, tmp_path):
    chip = ROOT.parent / "shared" / "realdata" / "sen1floods11_chip"
    if not chip.is_dir():
        pytest.skip(f"{chip} is absent (real files live beside the project, not in it)")
    run = quickstarted.dir / "single" / "dualsimclr_frozen" / "f0.5" / "seed0"
    out = tmp_path / "real.tif"
    assert predict_main(["--run", str(run), "--s2", str(chip / "Spain_7370579_S2Hand.tif"),
                         "--s1", str(chip / "Spain_7370579_S1Hand.tif"), "--out", str(out), "--tile", "64"]) == 0
    with rasterio.open(out) as m, rasterio.open(chip / "Spain_7370579_S2Hand.tif") as s2:
        assert s2.dtypes[0] == "int16" and s2.crs == "EPSG:4326" and m.crs == s2.crs
        assert (m.width, m.height) == (8, 8) and m.transform == s2.transform @ rasterio.Affine.scale(64)
        codes = m.read(1)
    assert ((codes < 8) | (codes == 255)).all() and (codes < 8).any()
