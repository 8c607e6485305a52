"""``python -m sslrs_tf.embed``: one Parquet row per tile, footprints that tile the scene, the encoders' pooled vectors
of the prepared tiles (against NumPy preparation), and the docs' search for similar places."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio

from sslrs_tf.embed import main as embed_main
from sslrs_tf.inference.runs import open_run
from tests.inference.fake_scenes import ORIGIN, scene_arrays, write_s1, write_s1_geographic, write_s2
from tests.inference.test_maps import numpy_per_sample_max


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 120 x 150 px scene: S2 (UTM) with a nodata corner, S1 in EPSG:4326 and on the S2 grid."""
    root = tmp_path_factory.mktemp("embed_scene")
    s2, _ = scene_arrays(120, 150, seed=3)
    s2[:, 100:, 120:] = 0  # nodata
    _, s1 = scene_arrays(136, 166, seed=4)
    return {"s2": write_s2(root / "s2.tif", s2), "s1_geo": write_s1_geographic(root / "s1_geo.tif", s1, 8),
            "s1": write_s1(root / "s1.tif", s1[:, 8:-8, 8:-8])}


@pytest.mark.slow
def test_tiles_of_a_scene_are_embedded_by_each_encoder_with_their_footprints(pretrained_run, scene, tmp_path, capsys):
    out = tmp_path / "tiles.parquet"
    assert embed_main(["--run", str(pretrained_run), "--s2", str(scene["s2"]), "--s1", str(scene["s1_geo"]),
                       "--out", str(out), "--tile", "32"]) == 0
    assert f"written: {out} (19 tiles)" in capsys.readouterr().out
    table = pq.read_table(out)
    meta = table.schema.metadata
    assert meta[b"crs"] == b"EPSG:32633" and meta[b"tile"] == b"32"
    assert json.loads(meta[b"card"])["method"] == "dual_simclr"
    rows = table.to_pydict()
    # 4 x 5 tiles of 32 px (the last row and column reach past the scene: 24 and 22 px inside); the corner one is
    # under half valid (nodata and outside).
    cells = list(zip(rows["row"], rows["col"], strict=True))
    assert cells == [(r, c) for r in range(4) for c in range(5) if (r, c) != (3, 4)]
    for r, c, x0, y0, x1, y1 in zip(rows["row"], rows["col"], rows["minx"], rows["miny"], rows["maxx"], rows["maxy"],
                                    strict=True):
        assert (x0, y1, x1, y0) == (ORIGIN[0] + 320 * c, ORIGIN[1] - 320 * r, ORIGIN[0] + 320 * (c + 1),
                                    ORIGIN[1] - 320 * (r + 1))
    assert rows["footprint_wkt"][0] == (f"POLYGON(({ORIGIN[0]} {ORIGIN[1] - 320}, {ORIGIN[0] + 320} {ORIGIN[1] - 320}, "
                                        f"{ORIGIN[0] + 320} {ORIGIN[1]}, {ORIGIN[0]} {ORIGIN[1]}, "
                                        f"{ORIGIN[0]} {ORIGIN[1] - 320}))")
    # UTM 33N at easting 500 km: the central meridian, 15 deg E; 4 650 km north: about 42 deg N.
    assert all(abs(lon - 15.0) < 0.05 for lon in rows["lon"]) and all(41.9 < lat < 42.1 for lat in rows["lat"])
    assert rows["valid_fraction"][0] == 1.0 and rows["valid_fraction"][-1] == (24 * 32 - 20 * 8) / 1024

    # The vectors: each encoder's pooled output on the tile prepared in NumPy (S1 from its own warp).
    trained = open_run(pretrained_run)
    with rasterio.open(scene["s2"]) as src:
        s2 = np.moveaxis(src.read(), 0, -1)[None, :32, 32:64].astype(np.float32)
    want = trained.model.encoders["s2"](numpy_per_sample_max(s2, 0.0, 1e4), training=False)["pooled"].numpy()[0]
    vectors = {k: np.stack(table.column(k).to_numpy(zero_copy_only=False)) for k in ("embedding_s1", "embedding_s2")}
    assert vectors["embedding_s1"].shape == (19, 512) and vectors["embedding_s2"].dtype == np.float32
    np.testing.assert_allclose(vectors["embedding_s2"][1], want, rtol=1e-4, atol=1e-4)

    # docs/maps.md's search: the tiles most like tile 7, by cosine similarity of the S2 embeddings.
    z = vectors["embedding_s2"] / np.linalg.norm(vectors["embedding_s2"], axis=1, keepdims=True)
    nearest = np.argsort(-(z @ z[7]))[:5]
    assert nearest[0] == 7 and len(set(nearest)) == 5


@pytest.mark.slow
def test_a_fine_tuned_run_embeds_with_its_encoders(quickstarted, scene, tmp_path):
    run = quickstarted.dir / "single" / "dualsimclr_frozen" / "f0.5" / "seed0"
    out = tmp_path / "ft.parquet"
    assert embed_main(["--run", str(run), "--s2", str(scene["s2"]), "--s1", str(scene["s1"]), "--out", str(out)]) == 0
    table = pq.read_table(out)
    assert {"embedding_s1", "embedding_s2"} <= set(table.column_names) and table.num_rows == 19


@pytest.mark.parametrize("argv, message", [(["--batch-size", "0"], "--batch-size takes 1 or more"),
                                           (["--tile", "8"], "--tile takes 16 px or more")])
def test_embed_and_predict_refuse_the_same_bad_options(argv, message, tmp_path, capsys):
    from sslrs_tf.predict import main as predict_main

    for command in (embed_main, predict_main):
        with pytest.raises(SystemExit) as stopped:
            command(["--run", str(tmp_path), "--s2", "s2.tif", "--out", str(tmp_path / "out"), *argv])
        assert stopped.value.code == 2 and message in capsys.readouterr().err
