"""Reading your own chips (sslrs_tf.data.chips): manifests, band names, units, grids, nodata, against NumPy.

The files are written here with real geometry (a UTM and a geographic CRS), and once from the real
Sen1Floods11 chip in ../shared/realdata (int16 S2, EPSG:4326, DEFLATE, transforms that differ in their
last digits between its files).
"""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from sslrs_tf.data import chips
from sslrs_tf.data.bands import S2_BANDS
from sslrs_tf.data.tfds_common import SkipReport
from sslrs_tf.errors import DataError, UserError
from tests.helpers import realdata

SIZE = 16
UTM = dict(crs="EPSG:32632", transform=from_origin(500_000.0, 5_000_000.0, 10.0, 10.0))
GEOGRAPHIC = dict(crs="EPSG:4326", transform=from_origin(-0.78, 38.13, 8.983e-05, 8.983e-05))
FILE_NAMES = [b if b == "B8A" else f"B{int(b[1:])}" for b in S2_BANDS]  # "B1", ... as many exports write them


def write(path, array, geo=UTM, descriptions=None, nodata=None):
    """Writes a ``[C, H, W]`` array as a GeoTIFF."""
    c, h, w = array.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=c, dtype=array.dtype.name,
                       nodata=nodata, **geo) as dst:
        dst.write(array)
        if descriptions:
            dst.descriptions = tuple(descriptions)
    return path


def rasters(seed=0, bands=13, s2_dtype=np.uint16):
    rng = np.random.default_rng(seed)
    s1 = rng.uniform(-30, 2, (2, SIZE, SIZE)).astype(np.float32)
    s2 = rng.integers(1, 12000, (bands, SIZE, SIZE)).astype(s2_dtype)
    mask = rng.integers(0, 4, (1, SIZE, SIZE)).astype(np.uint8)
    return s1, s2, mask


def pair(folder, name="a", geo=UTM, s1_geo=None, s2_descriptions=FILE_NAMES, seed=0, **kw):
    """Writes ``{name}_s1.tif``, ``{name}_s2.tif``, ``{name}_mask.tif``; returns (Chip, arrays)."""
    s1, s2, mask = rasters(seed, **kw)
    chip = chips.Chip(id=name, s1=write(folder / f"{name}_s1.tif", s1, s1_geo or geo, ("VV", "VH")),
                      s2=write(folder / f"{name}_s2.tif", s2, geo, s2_descriptions),
                      mask=write(folder / f"{name}_mask.tif", mask, geo))
    return chip, (s1, s2, mask)


def settings(**kw):
    return chips.ChipSettings(**{"patch_size": SIZE, "task": "segmentation", "classes": ("a", "b", "c"),
                                 "codes": {1: 0, 2: 1, 3: 2}, **kw})


@pytest.mark.parametrize("geo", [UTM, GEOGRAPHIC], ids=["utm", "geographic"])
def test_a_chip_is_stored_as_read_with_its_codes_as_classes(tmp_path, geo):
    chip, (s1, s2, mask) = pair(tmp_path, geo=geo)
    out = chips.load_chip(chip, settings())
    np.testing.assert_array_equal(out["s1"], np.moveaxis(s1, 0, -1))
    np.testing.assert_array_equal(out["s2"], np.moveaxis(s2, 0, -1))
    np.testing.assert_array_equal(out["s2_max"], s2.max(axis=(1, 2)))
    np.testing.assert_array_equal(out["s1_max"], s1.max(axis=(1, 2)))
    expected = np.array([255, 0, 1, 2], np.uint8)[mask[0]]  # code 0 is no class: ignored
    np.testing.assert_array_equal(out["mask"], expected)
    assert out["label"] == -1 and out["id"] == "a"


def test_bands_are_picked_by_their_descriptions_in_the_configured_order(tmp_path):
    chip, (_, s2, _) = pair(tmp_path)
    out = chips.load_chip(chip, settings(s2_bands=("B04", "B03", "B02", "B8A"), named_bands=True))
    np.testing.assert_array_equal(out["s2"], np.moveaxis(s2[[3, 2, 1, 8]], 0, -1))


def test_unnamed_bands_need_the_config_to_name_them(tmp_path):
    chip, (_, s2, _) = pair(tmp_path, bands=4, s2_descriptions=None)
    with pytest.raises(DataError, match=r"a_s2.tif: has 4 band\(s\) without band names; name them in the config's s2_bands"):
        chips.load_chip(chip, settings())
    out = chips.load_chip(chip, settings(s2_bands=("B02", "B03", "B04", "B08"), named_bands=True))
    np.testing.assert_array_equal(out["s2"], np.moveaxis(s2, 0, -1))
    # 13 unnamed bands are SEN12MS's order, a subset picked from them by name.
    chip, (_, s2, _) = pair(tmp_path, name="u", s2_descriptions=None)
    out = chips.load_chip(chip, settings(s2_bands=("B04", "B03", "B02"), named_bands=True))
    np.testing.assert_array_equal(out["s2"], np.moveaxis(s2[[3, 2, 1]], 0, -1))
    # 8-bit S2 (a visual export) is not reflectance.
    chip, _ = pair(tmp_path, name="v", s2_dtype=np.uint8)
    with pytest.raises(DataError, match=r"v_s2.tif: has dtype uint8, expected uint16, int16 or float"):
        chips.load_chip(chip, settings())


def test_a_file_lacking_a_configured_band_is_refused_by_name(tmp_path):
    chip, _ = pair(tmp_path, bands=3, s2_descriptions=("B2", "B3", "B4"))
    with pytest.raises(DataError, match=r"a_s2.tif: has no band B01 \(its bands: B02, B03, B04\)"):
        chips.load_chip(chip, settings())


def test_linear_s1_is_stored_in_db_and_int16_and_float_s2_as_uint16(tmp_path):
    s1, s2, _ = rasters()
    linear = (10.0 ** (s1 / 10.0)).astype(np.float32)
    signed = s2.astype(np.int16)
    signed[:, 0, :3] = [-9999, -1, 0]
    chip = chips.Chip(id="b", s1=write(tmp_path / "b_s1.tif", linear, descriptions=("VH", "VV")),
                      s2=write(tmp_path / "b_s2.tif", signed, descriptions=FILE_NAMES))
    out = chips.load_chip(chip, settings(s1_units="linear", task=None))
    # The file names its bands VH, VV: stored in the library's order VV, VH.
    np.testing.assert_allclose(out["s1"], np.moveaxis(10 * np.log10(linear[::-1]), 0, -1), atol=1e-5)
    np.testing.assert_array_equal(out["s2"], np.moveaxis(np.clip(signed, 0, None), 0, -1).astype(np.uint16))
    assert "mask" not in out

    reflectance = (s2 / 10000.0).astype(np.float32)
    chip = chips.Chip(id="c", s1=chip.s1, s2=write(tmp_path / "c_s2.tif", reflectance, descriptions=FILE_NAMES))
    with pytest.raises(DataError, match=r"c_s2.tif: holds float32 values; set the config's s2_scale"):
        chips.load_chip(chip, settings(task=None))
    out = chips.load_chip(chip, settings(task=None, s2_scale=10000, s1_units="linear"))
    np.testing.assert_array_equal(out["s2"], np.moveaxis(np.rint(reflectance.astype(np.float64) * 10000), 0, -1))


def test_one_grid_allows_origins_within_a_hundredth_of_a_pixel():
    class Raster:
        def __init__(self, x):
            self.crs, self.height, self.width = UTM["crs"], SIZE, SIZE
            self.transform = from_origin(500_000.0 + x, 5_000_000.0, 10.0, 10.0)

    assert chips.same_grid(Raster(0.0), Raster(0.09))  # 0.9 % of a 10 m pixel
    assert not chips.same_grid(Raster(0.0), Raster(0.11))


def test_a_pair_off_the_grid_is_refused_naming_both_files(tmp_path):
    shifted = dict(crs=UTM["crs"], transform=from_origin(500_030.0, 5_000_000.0, 10.0, 10.0))
    chip, _ = pair(tmp_path, s1_geo=shifted)
    with pytest.raises(chips.Misaligned, match=r"a_s1.tif: is not on the grid of .*a_s2.tif \(EPSG:32632, 16 x 16 px, "
                                                r"origin \(500030, 5e\+06\).*set on_misaligned: resample"):
        chips.load_chip(chip, settings())
    other, _ = pair(tmp_path, name="d", s1_geo=GEOGRAPHIC)
    with pytest.raises(chips.Misaligned, match="EPSG:4326"):
        chips.load_chip(other, settings())


def test_resample_averages_s1_in_linear_power_onto_the_s2_grid(tmp_path):
    # Half a pixel east: each S2 pixel lies midway between two S1 pixels; bilinear gives their mean power.
    shifted = dict(crs=UTM["crs"], transform=from_origin(500_005.0, 5_000_000.0, 10.0, 10.0))
    chip, (s1, _, _) = pair(tmp_path, s1_geo=shifted)
    out = chips.load_chip(chip, settings(on_misaligned="resample", max_nodata=0.1))
    linear = 10.0 ** (np.moveaxis(s1, 0, -1).astype(np.float64) / 10)
    expected = 10 * np.log10((linear[:, :-1] + linear[:, 1:]) / 2)
    np.testing.assert_allclose(out["s1"][1:-1, 1:], expected[1:-1], atol=1e-4)
    assert not np.allclose(out["s1"][1:-1, 1:], (np.moveaxis(s1, 0, -1)[1:-1, :-1] + np.moveaxis(s1, 0, -1)[1:-1, 1:]) / 2,
                           atol=1e-3)  # not the mean of the dB values
    # A file without a CRS cannot be warped: one line naming it.
    bare = chips.Chip(id="n", s1=write(tmp_path / "n_s1.tif", s1, dict(transform=shifted["transform"])), s2=chip.s2)
    with pytest.raises(DataError, match=r"n_s1.tif: (is not on the grid|cannot be warped onto the S2 grid)"):
        chips.load_chip(bare, settings(on_misaligned="resample"))


def test_resample_warps_s1_onto_the_s2_grid_in_linear_power(tmp_path):
    # S1 three pixels to the east: the S2 grid's first three columns have no S1 (nodata), the rest is S1 shifted.
    shifted = dict(crs=UTM["crs"], transform=from_origin(500_030.0, 5_000_000.0, 10.0, 10.0))
    chip, (s1, _, mask) = pair(tmp_path, s1_geo=shifted)
    report = SkipReport()
    assert chips.load_chip_example(("a", chip), settings(on_misaligned="resample"), report, "train") is None
    assert report.counts["train"] == {"nodata": 1}  # 3 of 16 columns: more than max_nodata 0
    out = chips.load_chip(chip, settings(on_misaligned="resample", max_nodata=0.25))
    np.testing.assert_allclose(out["s1"][:, 3:], np.moveaxis(s1, 0, -1)[:, :-3], atol=1e-4)
    assert np.isnan(out["s1"][:, :3]).all()
    assert (out["mask"][:, :3] == 255).all()  # no S1 there: not trained on
    np.testing.assert_array_equal(out["mask"][:, 3:], np.array([255, 0, 1, 2], np.uint8)[mask[0]][:, 3:])
    # A mask on S1's grid instead is warped by nearest neighbour: its class codes stay class codes.
    shifted_mask = chips.Chip(id="a", s1=chip.s1, s2=chip.s2, mask=write(tmp_path / "m.tif", mask, shifted))
    out = chips.load_chip(shifted_mask, settings(on_misaligned="resample", max_nodata=0.25))
    np.testing.assert_array_equal(out["mask"][:, 3:], np.array([255, 0, 1, 2], np.uint8)[mask[0]][:, :-3])
    assert (out["mask"][:, :3] == 255).all()


def test_nodata_pixels_skip_a_chip_or_are_kept_as_nan_zero_and_ignored(tmp_path):
    s1, s2, mask = rasters()
    s1[:, 0, :4] = np.nan  # 4 of 256 pixels
    s2[:, 5, 5] = 65535  # the S2 file's nodata value: 1 more
    chip = chips.Chip(id="e", s1=write(tmp_path / "e_s1.tif", s1), s2=write(tmp_path / "e_s2.tif", s2, nodata=65535,
                                                                            descriptions=FILE_NAMES),
                      mask=write(tmp_path / "e_mask.tif", mask))
    report = SkipReport()
    assert chips.load_chip_example(("e", chip), settings(), report, "train") is None
    assert report.counts["train"] == {"nodata": 1} and report.examples["nodata"] == {str(chip.s1)}  # S1 has more
    assert chips.load_chip_example(("e", chip), settings(max_nodata=4 / 256), SkipReport(), "train") is None
    out = chips.load_chip(chip, settings(max_nodata=5 / 256))
    assert np.isnan(out["s1"][0, :4]).all() and not np.isnan(out["s1"][1:]).any()
    assert (out["s2"][5, 5] == 0).all()
    invalid = np.zeros((SIZE, SIZE), bool)
    invalid[0, :4] = invalid[5, 5] = True
    np.testing.assert_array_equal(out["mask"] == 255, invalid | (mask[0] == 0))
    np.testing.assert_array_equal(out["s1_max"], np.nanmax(s1, axis=(1, 2)))


def test_problems_are_counted_by_reason_or_raised(tmp_path):
    chip, _ = pair(tmp_path)
    gone = chips.Chip(id="g", s1=tmp_path / "g_s1.tif", s2=chip.s2)
    report = SkipReport()
    assert chips.load_chip_example(("g", gone), settings(), report, "train") is None
    broken = chips.Chip(id="h", s1=chip.s1, s2=tmp_path / "h_s2.tif")
    broken.s2.write_bytes(b"not a tiff")
    with pytest.raises(DataError, match=r"h_s2.tif: cannot be read as a GeoTIFF"):
        chips.load_chip_example(("h", broken), settings(), report, "train")
    assert chips.load_chip_example(("h", broken), settings(on_error="skip"), report, "train") is None
    off = chips.Chip(id="i", s1=pair(tmp_path, name="i", s1_geo=GEOGRAPHIC)[0].s1, s2=chip.s2)
    assert chips.load_chip_example(("i", off), settings(on_error="skip"), report, "train") is None
    small = settings(patch_size=SIZE * 2)
    with pytest.raises(DataError, match=r"a_s2.tif: is 16 x 16 px, expected 32 x 32 \(patch_size\)"):
        chips.load_chip(chip, small)
    assert report.counts["train"] == {"missing_s1": 1, "bad_file": 1, "misaligned": 1}


def test_the_manifest_and_the_folder_pattern_list_the_chips(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("x", "sub/y"):
        pair(tmp_path, name=name)
    (tmp_path / "sub" / "y_mask.tif").unlink()
    found = chips.find_chips(tmp_path)
    assert [(c.id, c.s1.name, c.mask and c.mask.name) for c in found] == [("sub/y", "y_s1.tif", None),
                                                                          ("x", "x_s1.tif", "x_mask.tif")]
    (tmp_path / "manifest.csv").write_text("s1,s2,label,split\nx_s1.tif,x_s2.tif,water,train\n"
                                           "sub/y_s1.tif, sub/y_s2.tif ,land,\n")
    listed = chips.read_manifest(tmp_path)
    assert [(c.id, c.s2, c.label, c.split) for c in listed] == [("x", tmp_path / "x_s2.tif", "water", "train"),
                                                                ("y", tmp_path / "sub/y_s2.tif", "land", None)]
    assert chips.split_of(listed[0], 0.5) == "train"
    # Without a split: a stable hash of the id, the same however many chips there are.
    assert {chips.split_of(chips.Chip(id=f"c{i}", s1=None, s2=None), 0.1) for i in range(200)} == {"train", "test"}
    assert sum(chips.split_of(chips.Chip(id=f"c{i}", s1=None, s2=None), 0.1) == "test" for i in range(2000)) in \
        range(150, 250)


@pytest.mark.parametrize("text, error", [
    ("s1,s2,colour\na,b,c\n", r"unknown column 'colour'; expected s1, s2 and optionally id, label, mask, split"),
    ("s1,label\na,b\n", r"no column 's2'; a manifest needs s1 and s2"),
    ("s1,s2,label,mask\na,b,c,d\n", r"has both a label and a mask column"),
    ("id,s1,s2\nq,a,b\nq,c,d\n", r"line 3: id 'q' repeats line 2"),
    ("s1,s2,split\na,b,Train set\n", r"line 2: split 'Train set' is not a split name"),
    ("s1,s2,mask\na,b,\n", r"line 2: empty mask"),
    ("s1,s2\n", r"no rows"),
])
def test_a_bad_manifest_is_answered_in_one_line_naming_the_line(tmp_path, text, error):
    (tmp_path / "manifest.csv").write_text(text)
    with pytest.raises(UserError, match=error):
        chips.read_manifest(tmp_path)


def test_a_manifest_saved_by_a_spreadsheet_is_read_and_other_encodings_are_named(tmp_path):
    (tmp_path / "manifest.csv").write_bytes("\ufeffs1,s2\r\na_s1.tif,a_s2.tif\r\n".encode())
    assert [c.id for c in chips.read_manifest(tmp_path)] == ["a"]
    (tmp_path / "manifest.csv").write_bytes("s1,s2\nä_s1.tif,ä_s2.tif\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"manifest.csv: not UTF-8 text .*; save it as UTF-8 CSV"):
        chips.read_manifest(tmp_path)


def test_class_codes_from_a_list_or_a_mapping():
    assert chips.class_codes(["dry", "water"]) == ({0: 0, 1: 1}, ("dry", "water"))
    assert chips.class_codes({"3": "water", 1: "land"}) == ({1: 0, 3: 1}, ("land", "water"))
    with pytest.raises(UserError, match="distinct"):
        chips.class_codes(["a", "a"])
    with pytest.raises(UserError, match=r"config classes must be a list of class names or a mapping"):
        chips.class_codes("water")
    assert [chips.band_name(b) for b in ("B1", "b8a", "B08", "B12", "vh")] == ["B01", "B8A", "B08", "B12", "VH"]


def test_the_real_sen1floods11_chip(tmp_path):
    folder = realdata("sen1floods11_chip")
    chip = chips.Chip(id="spain", s1=folder / "Spain_7370579_S1Hand.tif", s2=folder / "Spain_7370579_S2Hand.tif",
                      mask=folder / "Spain_7370579_LabelHand.tif")
    codes, names = chips.class_codes({0: "dry", 1: "water"})
    out = chips.load_chip(chip, chips.ChipSettings(patch_size=512, task="segmentation", classes=names, codes=codes))
    with rasterio.open(chip.s2) as s2, rasterio.open(chip.s1) as s1, rasterio.open(chip.mask) as m:
        # Its files' transforms differ in the 14th digit: one grid all the same.
        assert s2.transform != m.transform and chips.same_grid(s2, m)
        np.testing.assert_array_equal(out["s2"], np.moveaxis(np.clip(s2.read(), 0, None), 0, -1).astype(np.uint16))
        np.testing.assert_array_equal(out["s1"], np.moveaxis(s1.read(), 0, -1))  # its outliers are kept raw
        label = m.read(1)
    np.testing.assert_array_equal(out["mask"], np.where(label < 0, 255, label).astype(np.uint8))
    assert 0 < (out["mask"] == 1).sum() and (out["mask"] == 255).sum() == (label == -1).sum()
