"""Scenes read window by window (no model): band names, S1 in linear power, S1 covering part of the scene, S1 alone,
and a Swin run's tile size."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from sslrs_tf.errors import UserError
from sslrs_tf.inference.maps import predict_map
from sslrs_tf.inference.runs import TrainedModel
from sslrs_tf.inference.scenes import Scene, band_key
from tests.inference.fake_scenes import ORIGIN, scene_arrays, write_s1, write_s2


def test_band_names_compare_without_case_spaces_or_a_leading_zero():
    assert band_key("b2") == band_key("B02") == band_key(" B 02") and band_key("B8A") == band_key("b08a")
    assert band_key("B8A") != band_key("B08") and band_key("vv") == "VV"


def test_bands_are_found_by_their_descriptions_in_any_order(tmp_path):
    s2, s1 = scene_arrays(40, 40)
    path = tmp_path / "s2.tif"
    with rasterio.open(path, "w", driver="GTiff", width=40, height=40, count=3, dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(*ORIGIN, 10, 10)) as dst:
        dst.write(s2[[7, 3, 1]])  # B08, B04, B02, named loosely
        for i, name in enumerate(("b8", "B4", "B02"), 1):
            dst.set_band_description(i, name)
    with Scene({"s2": path}, {"s2": ("B02", "B04", "B08")}) as scene:
        raw, valid = scene.read(0, 0, 16)
    np.testing.assert_array_equal(raw["s2"], np.moveaxis(s2[[1, 3, 7]], 0, -1)[:16, :16].astype(np.float32))
    assert valid.all()


def test_s1_in_linear_power_is_read_in_db(tmp_path):
    _, s1 = scene_arrays(32, 32)
    write_s1(tmp_path / "db.tif", s1)
    write_s1(tmp_path / "power.tif", (10.0 ** (s1 / 10.0)).astype(np.float32))
    reads = []
    for name, units in (("db.tif", "db"), ("power.tif", "linear")):
        with Scene({"s1": tmp_path / name}, {"s1": ("VV", "VH")}, s1_units=units) as scene:
            reads.append(scene.read(0, 0, 32)[0]["s1"])
    np.testing.assert_allclose(reads[1], reads[0], rtol=0, atol=1e-4)


def test_a_model_reading_s1_alone_takes_the_s1_grid_and_outside_an_s1_footprint_is_invalid(tmp_path):
    s2, s1 = scene_arrays(40, 40)
    write_s2(tmp_path / "s2.tif", s2)
    # S1 covers the scene's left half only (its own, narrower grid).
    write_s1(tmp_path / "half.tif", s1[:, :, :20])
    with Scene({"s1": tmp_path / "half.tif"}, {"s1": ("VV", "VH")}) as alone:
        assert (alone.width, alone.height) == (20, 40)
    with Scene({"s1": tmp_path / "half.tif", "s2": tmp_path / "s2.tif"}, {"s1": ("VV",), "s2": ("B02",)}) as both:
        assert (both.width, both.height) == (40, 40)
        raw, valid = both.read(0, 0, 40)
    np.testing.assert_allclose(raw["s1"][:, :19, 0], s1[0, :, :19], rtol=0, atol=1e-5)
    assert valid[:, :19].all() and not valid[:, 21:].any() and np.isnan(raw["s1"][:, 21:]).all()


def test_a_swin_run_takes_tiles_of_its_crop_size_only(tmp_path):
    trained = TrainedModel(tmp_path, {"backbone": "swin_micro"}, "segmentation", {}, ("a", "b"), 32, model=None)
    with pytest.raises(UserError, match=r"--tile 64: the run's Swin encoder takes 32 px tiles only"):
        predict_map(trained, None, tmp_path / "m.tif", tile=64)
