"""The synthetic world: layout, determinism, and that S1 and S2 really are two views of one landscape."""

import json
import subprocess
import sys

import numpy as np
import rasterio

from sslrs_tf.data import layout, synthetic
from sslrs_tf.data.geotiff import read_raster
from sslrs_tf.data.labels import IGBP_TO_DFC10


def tif_files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.tif"))


def test_command_line_writes_both_layouts_with_crs_and_transform(tmp_path):
    out = tmp_path / "world"
    run = subprocess.run([sys.executable, "-m", "sslrs_tf.data.synthetic", "--out", str(out), "--patches", "20",
                          "--size", "32", "--seed", "5"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "SYNTHETIC" in run.stdout
    assert json.loads((out / "world.json").read_text())["patches"] == 20
    s2 = sorted((out / "sen12ms").rglob("*_s2_*.tif"))
    assert len(s2) == 20
    for path in s2:
        rel = str(path.relative_to(out / "sen12ms"))
        for kind in ("s1", "lc"):
            assert (out / "sen12ms" / rel.replace("_s2_", f"_{kind}_").replace("/s2_", f"/{kind}_")).exists()
    assert {p.parts[0] for p in tif_files(out / "sen12ms")} == set(layout.SEASON_FOLDERS.values())
    with rasterio.open(s2[0]) as src:
        assert src.crs.to_epsg() // 100 == 326 and src.transform.a == 10.0 and src.count == 13
    assert (out / "dfc2020" / layout.dfc2020_path("validation", "dfc", 4)).exists()
    assert (out / "dfc2020" / layout.dfc2020_path("test", "s1", 4)).exists()


def test_bad_arguments_are_one_line_errors(tmp_path):
    run = subprocess.run([sys.executable, "-m", "sslrs_tf.data.synthetic", "--out", str(tmp_path), "--size", "15"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "--size" in run.stderr


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        synthetic.generate(tmp_path / name, patches=8, size=32, seed=seed)
    files = tif_files(tmp_path / "a")
    assert files == tif_files(tmp_path / "b")
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    s2 = [f for f in files if "_s2_" in str(f)][0]
    other = sorted((tmp_path / "c").rglob("*_s2_*.tif"))[0]
    assert (tmp_path / "a" / s2).read_bytes() != other.read_bytes()


def test_value_ranges_and_defects_like_real_data():
    rng = np.random.default_rng(0)
    scene = synthetic.Scene(rng, "summer", 64)
    patches = [scene.patch(t % 16) for t in range(200)]
    s1 = np.stack([p["s1"] for p in patches])
    assert any(np.isnan(p["s1"]).any() for p in patches)  # NaN areas
    assert np.nanmax(s1) > 10  # bright outliers
    finite = s1[np.isfinite(s1)]
    assert -35 < np.median(finite) < -5
    s2 = np.stack([p["s2"] for p in patches])
    assert s2.dtype == np.uint16 and s2.max() > 5000  # clouds
    assert set(np.unique(scene.lc[..., 0])) <= set(range(1, 18))


def test_s1_and_s2_both_carry_the_hidden_classes():
    """Per-class mean S1 VV and S2 NIR differ between classes far more than their within-class spread."""
    scene = synthetic.Scene(np.random.default_rng(1), "summer", 128)
    classes = scene.classes
    water, forest = classes == 10, classes == 1
    assert water.any() and forest.any()
    for image, band in ((scene.s1, 0), (scene.s2, 7)):
        a, b = image[..., band][water], image[..., band][forest]
        assert abs(a.mean() - b.mean()) > 2 * max(a.std(), b.std()) / np.sqrt(16)
    # Seasons change the vegetation's near infrared.
    winter = synthetic.Scene(np.random.default_rng(1), "winter", 128)
    assert winter.s2[..., 7][forest].mean() < 0.8 * scene.s2[..., 7][forest].mean()


def test_lc_is_coarse_and_noisy_but_agrees_with_dfc_mostly(tmp_path):
    synthetic.generate(tmp_path, patches=4, size=64, seed=2, dfc_validation=4, dfc_test=0)
    agree = []
    for patch in range(4):
        lc = read_raster(tmp_path / "dfc2020" / layout.dfc2020_path("validation", "lc", patch), "lc")
        dfc = read_raster(tmp_path / "dfc2020" / layout.dfc2020_path("validation", "dfc", patch), "dfc")
        agree.append(np.mean(IGBP_TO_DFC10[lc[..., 0]] == dfc))
        # MODIS-like: lc changes value only on one grid of blocks (64 px // 5 = 12 px).
        rows, cols = np.nonzero(lc[:, 1:, 0] != lc[:, :-1, 0])
        assert len(cols) and len(set((cols + 1) % 12)) == 1
    assert 0.4 < np.mean(agree) < 0.99
