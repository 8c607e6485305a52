"""A synthetic Sentinel world: SEN12MS- and DFC2020-shaped GeoTIFFs of an invented landscape.

THE DATA WRITTEN HERE IS SYNTHETIC. It exists so that tests, the quick start and
the benchmarks run on any machine, without the 400 GB of real SEN12MS.

What it models, so that multi-modal self-supervision has something to find:

* a hidden landscape per scene: spatially coherent land-cover fields over the
  DFC-10 classes (savanna and snow included, so the ignored classes occur);
* Sentinel-2: a 13-band spectrum per class (reflectance x 10 000) with
  within-class variation, seasonal change of vegetation, haze in the
  atmospheric bands (B01, B09, B10) and clouds that only S2 sees;
* Sentinel-1: VV/VH backscatter per class in dB with multiplicative speckle,
  an incidence-angle gradient, and — like real files — a few NaN areas and
  bright outliers up to +25 dB;
* labels: a coarse, MODIS-like 4-band ``lc`` (IGBP in band 1) with label noise
  and a fine DFC-10 ``dfc`` mask.

Patches of one scene are tiles of the same landscape with stride size/2 (so,
like SEN12MS, neighbours overlap) and non-contiguous patch ids. Files are
uncompressed GeoTIFFs with a UTM CRS and a 10 m transform. The same arguments
give the same bytes.

Command line::

    python -m sslrs_tf.data.synthetic --out DIR --patches N --size PX --seed S
"""

import argparse
import json
import math
import pathlib
import sys

import numpy as np
import rasterio
from rasterio.transform import from_origin

from sslrs_tf.data import layout
from sslrs_tf.data.bands import S2_BANDS as _S2_NAMES
from sslrs_tf.errors import UserError, run_entry_point

# DFC-10 classes 1..10: Forest, Shrubland, Savanna, Grassland, Wetlands,
# Croplands, Urban, Snow/Ice, Barren, Water.
CLASS_WEIGHTS = np.array([0.17, 0.08, 0.04, 0.15, 0.07, 0.18, 0.08, 0.02, 0.07, 0.14])
VEGETATION = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)

# Top-of-atmosphere reflectance x 10 000, bands B01..B12 in SEN12MS order.
S2_SPECTRA = np.array([
    [250, 300, 500, 300, 800, 2200, 2700, 2900, 3000, 900, 15, 1500, 700],          # Forest
    [400, 500, 750, 800, 1200, 1800, 2100, 2300, 2400, 800, 15, 2400, 1600],        # Shrubland
    [450, 550, 800, 900, 1300, 1900, 2200, 2400, 2500, 850, 15, 2700, 1800],        # Savanna
    [350, 450, 800, 600, 1200, 2500, 3000, 3200, 3300, 950, 15, 2200, 1200],        # Grassland
    [300, 350, 550, 450, 800, 1500, 1800, 1900, 2000, 600, 12, 1200, 700],          # Wetlands
    [350, 450, 750, 650, 1300, 2800, 3400, 3600, 3700, 1000, 15, 2300, 1300],       # Croplands
    [1000, 1100, 1200, 1300, 1450, 1600, 1700, 1800, 1850, 700, 20, 2200, 2000],    # Urban
    [7500, 7800, 7700, 7600, 7400, 7000, 6800, 6600, 6400, 2500, 60, 900, 700],     # Snow/Ice
    [900, 1100, 1500, 1900, 2200, 2500, 2700, 2800, 2900, 1000, 20, 3800, 3200],    # Barren
    [700, 600, 500, 300, 250, 200, 180, 150, 140, 60, 10, 80, 50],                  # Water
], np.float64)
CLOUD_SPECTRUM = np.array([6500, 6800, 7000, 7100, 7200, 7300, 7300, 7400, 7400, 2800, 900, 4500, 3500], np.float64)
RED_EDGE_NIR = slice(4, 9)  # B05..B8A respond to the vegetation's season
HAZE_GAIN = np.array([900, 350, 150, 50, 0, 0, 0, 0, 0, 400, 250, 0, 0], np.float64)

# Backscatter in dB (VV, VH) per class, before speckle.
S1_DB = np.array([
    [-7.5, -13.5], [-9.0, -16.0], [-10.0, -17.0], [-11.0, -18.0], [-8.5, -16.5],
    [-10.0, -17.0], [-4.0, -11.0], [-14.0, -22.0], [-15.0, -24.0], [-21.0, -28.0],
], np.float64)

SEASON_VEG_GAIN = {"spring": 0.9, "summer": 1.1, "fall": 0.8, "winter": 0.6}
SEASON_CROP_DB = {"spring": 1.0, "summer": 2.0, "fall": -1.0, "winter": -2.0}

# IGBP codes a DFC-10 class can come from (the inverse of IGBP -> DFC-10).
IGBP_CHOICES = [(1, 2, 4, 5), (6, 7), (8, 9), (10,), (11,), (12, 14), (13,), (15,), (16,), (17,)]
# Plausible LCCS land-cover, land-use and surface-hydrology codes per DFC-10 class.
LCCS_CODES = np.array([
    [12, 10, 10], [31, 25, 10], [41, 30, 10], [36, 30, 10], [35, 40, 20],
    [25, 36, 10], [9, 9, 10], [2, 2, 10], [1, 1, 10], [3, 3, 3],
], np.uint8)

SPECKLE_LOOKS = 4.0
NAN_PATCH_RATE = 0.03
OUTLIER_PATCH_RATE = 0.2
CLOUD_PATCH_RATE = 0.15
LC_NOISE_RATE = 0.1
PATCHES_PER_SCENE = 16  # a 4 x 4 grid of tiles with stride size/2


def _upsample_matrix(coarse, fine):
    """Linear-interpolation weights from `coarse` grid points to `fine` pixels."""
    pos = np.linspace(0, coarse - 1, fine)
    low = np.floor(pos).astype(int).clip(0, coarse - 2)
    frac = pos - low
    m = np.zeros((fine, coarse))
    m[np.arange(fine), low] = 1 - frac
    m[np.arange(fine), low + 1] = frac
    return m


def smooth_field(rng, count, extent, cell):
    """`count` smooth random fields of `extent` x `extent` pixels with features about `cell` pixels wide."""
    coarse = max(2, int(math.ceil(extent / cell)) + 1)
    up = _upsample_matrix(coarse, extent)
    noise = rng.standard_normal((count, coarse, coarse))
    return np.einsum("ij,cjk,lk->cil", up, noise, up)


class Scene:
    """One hidden landscape and everything the sensors and label makers see of it.

    Args:
        rng: the scene's own ``numpy.random.Generator``.
        season: ``spring``, ``summer``, ``fall`` or ``winter``.
        size: patch size in pixels; the scene spans 2.5 patches on each side.
    """

    def __init__(self, rng, season, size):
        self.rng, self.season, self.size = rng, season, size
        self.stride = size // 2
        self.extent = self.stride * 3 + size
        weights = CLASS_WEIGHTS.copy()
        if season == "winter":
            weights[7] *= 4
        logits = smooth_field(rng, 10, self.extent, cell=max(4, size / 3)) + 1.5 * np.log(weights)[:, None, None]
        self.classes = (np.argmax(logits, axis=0) + 1).astype(np.uint8)  # DFC-10 codes 1..10
        self.s2 = self._render_s2()
        self.s1 = self._render_s1()
        self.lc = self._render_lc()

    def _render_s2(self):
        rng, idx = self.rng, self.classes - 1
        spectra = S2_SPECTRA.copy()
        spectra[VEGETATION, RED_EDGE_NIR] *= SEASON_VEG_GAIN[self.season]
        spectra[5, RED_EDGE_NIR] *= SEASON_VEG_GAIN[self.season]  # crops change most
        if self.season == "winter":
            spectra[VEGETATION, 1:4] *= 1.3
        image = spectra[idx]  # [E, E, 13]
        # Within-class variation: a smooth brightness field per class, plus pixel noise.
        brightness = 1 + 0.12 * smooth_field(rng, 10, self.extent, cell=self.size / 4)
        image *= np.take_along_axis(brightness, idx[None], 0)[0][..., None]
        image *= 1 + 0.03 * rng.standard_normal(image.shape)
        haze = np.clip(smooth_field(rng, 1, self.extent, cell=self.size)[0] + 0.5, 0, None)
        image += haze[..., None] * HAZE_GAIN
        return image

    def _render_s1(self):
        rng = self.rng
        db = S1_DB[self.classes - 1].copy()
        db[self.classes == 6] += SEASON_CROP_DB[self.season]
        db += 0.8 * smooth_field(rng, 2, self.extent, cell=self.size / 4).transpose(1, 2, 0)
        # Incidence angle grows across the swath; backscatter falls with it.
        db += np.linspace(1.0, -1.0, self.extent)[None, :, None]
        speckle = rng.gamma(SPECKLE_LOOKS, 1 / SPECKLE_LOOKS, db.shape)
        return 10 * np.log10(10 ** (db / 10) * speckle)

    def _render_lc(self):
        rng, block = self.rng, max(2, self.size // 5)  # MODIS 500 m against 10 m pixels
        nb = -(-self.extent // block)
        padded = np.pad(self.classes, ((0, nb * block - self.extent),) * 2, mode="edge")
        blocks = padded.reshape(nb, block, nb, block).transpose(0, 2, 1, 3).reshape(nb, nb, -1)
        counts = np.stack([(blocks == c).sum(-1) for c in range(1, 11)], -1)
        coarse = counts.argmax(-1)  # 0..9
        noisy = rng.random(coarse.shape) < LC_NOISE_RATE
        coarse[noisy] = rng.integers(0, 10, noisy.sum())
        igbp = np.array([rng.choice(IGBP_CHOICES[c]) for c in coarse.ravel()], np.uint8).reshape(coarse.shape)
        bands = np.concatenate([igbp[..., None], LCCS_CODES[coarse]], -1)
        full = np.repeat(np.repeat(bands, block, 0), block, 1)
        return full[: self.extent, : self.extent]

    def tile_origin(self, tile):
        """Pixel offset (row, col) of tile number `tile` (0..15) in the scene."""
        return (tile // 4) * self.stride, (tile % 4) * self.stride

    def patch(self, tile):
        """The s1, s2, lc and dfc arrays ``[H, W, C]`` of one tile, with per-patch artefacts added."""
        rng, size = self.rng, self.size
        r, c = self.tile_origin(tile)
        window = np.s_[r : r + size, c : c + size]
        s2 = self.s2[window].copy()
        if rng.random() < CLOUD_PATCH_RATE:
            cover = np.clip(smooth_field(rng, 1, size, cell=size / 3)[0] * 1.5 + rng.uniform(-1, 1), 0, 1)
            s2 = (1 - cover[..., None]) * s2 + cover[..., None] * CLOUD_SPECTRUM
        s1 = self.s1[window].copy()
        if rng.random() < OUTLIER_PATCH_RATE:
            n = max(1, size * size // 2000)
            s1[rng.integers(0, size, n), rng.integers(0, size, n)] = rng.uniform(15, 25, (n, 2))
        if rng.random() < NAN_PATCH_RATE:
            h, w = rng.integers(size // 8, size // 2, 2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            s1[y : y + h, x : x + w] = np.nan
        return {
            "s1": s1.astype(np.float32),
            "s2": np.clip(np.rint(s2), 0, 65535).astype(np.uint16),
            "lc": self.lc[window].copy(),
            "dfc": self.classes[window][..., None].copy(),
        }


def write_geotiff(path, array, origin, epsg):
    """Writes an ``[H, W, C]`` array as an uncompressed GeoTIFF with a UTM CRS and 10 m pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w, c = array.shape
    profile = dict(driver="GTiff", height=h, width=w, count=c, dtype=array.dtype.name,
                   crs=f"EPSG:{epsg}", transform=from_origin(origin[0], origin[1], 10.0, 10.0))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(array, -1, 0))


def _scene_geo(rng, r, c):
    epsg = 32600 + int(rng.integers(1, 61))
    x0, y0 = rng.uniform(2e5, 8e5), rng.uniform(1e6, 8e6)
    return (x0 + c * 10.0, y0 - r * 10.0), epsg


def _split_counts(total, parts):
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def generate_sen12ms(out, patches, size, seed):
    """Writes `patches` triplets in the SEN12MS layout under `out`; returns their relative s2 paths."""
    n_scenes = max(len(layout.SEASONS), -(-patches // PATCHES_PER_SCENE))
    written = []
    scene_ids = np.random.default_rng([seed, 1]).permutation(np.arange(1, 4 * n_scenes + 2))[:n_scenes]
    for i, (count, scene_id) in enumerate(zip(_split_counts(patches, n_scenes), scene_ids)):
        season = layout.SEASONS[i % len(layout.SEASONS)]
        rng = np.random.default_rng([seed, 2, i])
        scene = Scene(rng, season, size)
        tiles = np.sort(rng.choice(PATCHES_PER_SCENE, size=min(count, PATCHES_PER_SCENE), replace=False))
        geo_rng = np.random.default_rng([seed, 3, i])
        origin, epsg = _scene_geo(geo_rng, 0, 0)
        for tile in tiles:
            # Patch ids are not contiguous in SEN12MS; number tiles with gaps.
            patch_no = int(tile) * 3 + 1
            r, c = scene.tile_origin(tile)
            data = scene.patch(tile)
            for kind in layout.SEN12MS_KINDS:
                rel = layout.sen12ms_path(season, kind, int(scene_id), patch_no)
                write_geotiff(out / rel, data[kind], (origin[0] + c * 10, origin[1] - r * 10), epsg)
            written.append(layout.sen12ms_path(season, "s2", int(scene_id), patch_no))
    return written


def generate_dfc2020(out, counts, size, seed, folder_suffix=None):
    """Writes DFC2020-layout quadruplets (`counts` = {split: n}) under `out`."""
    for s, (split, n) in enumerate(sorted(counts.items())):
        patch_no = 0
        for j, count in enumerate(_split_counts(n, max(1, -(-n // PATCHES_PER_SCENE)))):
            rng = np.random.default_rng([seed, 4, s, j])
            season = layout.SEASONS[int(rng.integers(0, 4))]
            scene = Scene(rng, season, size)
            origin, epsg = _scene_geo(np.random.default_rng([seed, 5, s, j]), 0, 0)
            for tile in range(count):
                r, c = scene.tile_origin(tile)
                data = scene.patch(tile)
                suffix = folder_suffix if split == "validation" else None
                for kind in layout.DFC2020_KINDS:
                    rel = layout.dfc2020_path(split, kind, patch_no, suffix)
                    write_geotiff(out / rel, data[kind], (origin[0] + c * 10, origin[1] - r * 10), epsg)
                patch_no += 1


def generate(out, patches=400, size=64, seed=0, dfc_validation=None, dfc_test=None):
    """Writes the synthetic world: ``out/sen12ms`` and ``out/dfc2020``, plus ``out/world.json``.

    Args:
        out: output folder.
        patches: number of SEN12MS triplets.
        size: patch size in pixels (real data: 256).
        seed: the world's seed; the same arguments give the same bytes.
        dfc_validation: DFC2020 validation patches (default: patches // 4).
        dfc_test: DFC2020 test patches (default: patches // 4).

    Returns:
        The parameters written to ``world.json``.
    """
    if size < 16 or size % 2:
        raise UserError(f"--size must be an even number of pixels >= 16. Received: {size}")
    if patches < 1:
        raise UserError(f"--patches must be at least 1. Received: {patches}")
    out = pathlib.Path(out)
    params = {
        "synthetic": True,
        "patches": patches,
        "size": size,
        "seed": seed,
        "dfc_validation": patches // 4 if dfc_validation is None else dfc_validation,
        "dfc_test": patches // 4 if dfc_test is None else dfc_test,
    }
    generate_sen12ms(out / "sen12ms", patches, size, seed)
    generate_dfc2020(out / "dfc2020", {"validation": params["dfc_validation"], "test": params["dfc_test"]}, size, seed)
    (out / "world.json").write_text(json.dumps(params, indent=2) + "\n")
    return params


#: the classes of :func:`generate_chips`' labels, as a builder config's ``classes`` mapping (mask codes: 0 no data)
CHIP_CLASSES = {1: "land", 2: "urban", 3: "water"}
_DFC10_TO_CHIP = np.array([0, 1, 1, 1, 1, 1, 1, 2, 1, 1, 3], np.uint8)


def generate_chips(out, chips=12, size=64, seed=0, *, task=None, crs="utm", manifest=True, s1_units="db"):
    """Writes co-registered S1/S2 chips of your-own-data shape under `out` (the ``paired_chips`` builder's input).

    Each chip is a tile of a synthetic scene: ``<id>_s1.tif`` (VV, VH; dB or linear power), ``<id>_s2.tif``
    (13 bands, uint16, band descriptions ``B1`` .. ``B12`` as many exports write them) and, for segmentation,
    ``<id>_mask.tif`` (:data:`CHIP_CLASSES` codes, 0 no data), all on one grid. With `manifest`, a
    ``manifest.csv`` lists them (with a ``label`` column for classification: the chip's most frequent class).

    Args:
        task: None, ``"classification"`` or ``"segmentation"``.
        crs: ``"utm"`` (10 m pixels) or ``"geographic"`` (EPSG:4326, ~10 m pixels in degrees).
        s1_units: ``"db"`` or ``"linear"``.

    Returns:
        The chip ids, in the order written.
    """
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, ids = [], []
    for j in range(-(-chips // PATCHES_PER_SCENE)):
        rng = np.random.default_rng([seed, 6, j])
        scene = Scene(rng, layout.SEASONS[j % 4], size)
        origin, epsg = _scene_geo(np.random.default_rng([seed, 7, j]), 0, 0)
        for tile in range(min(PATCHES_PER_SCENE, chips - j * PATCHES_PER_SCENE)):
            r, c = scene.tile_origin(tile)
            data = scene.patch(tile)
            data["s1"] = np.nan_to_num(data["s1"], nan=-30.0)  # no nodata: a user's chip decides its own
            if crs == "geographic":
                pixel = 10.0 / 111_320
                geo = dict(crs="EPSG:4326", transform=from_origin(-0.78 + (j * 4 + c / size) * size * pixel,
                                                                   38.1 - r * pixel, pixel, pixel))
            else:
                geo = dict(crs=f"EPSG:{epsg}", transform=from_origin(origin[0] + c * 10, origin[1] - r * 10, 10.0, 10.0))
            chip_id = f"chip{len(ids):03d}"
            s1 = data["s1"] if s1_units == "db" else (10.0 ** (data["s1"] / 10.0)).astype(np.float32)
            _write(out / f"{chip_id}_s1.tif", s1, geo, ("VV", "VH"))
            _write(out / f"{chip_id}_s2.tif", data["s2"], geo, [b if b == "B8A" else f"B{int(b[1:])}" for b in _S2_NAMES])
            classes = _DFC10_TO_CHIP[data["dfc"][..., 0]]
            row = {"id": chip_id, "s1": f"{chip_id}_s1.tif", "s2": f"{chip_id}_s2.tif"}
            if task == "segmentation":
                _write(out / f"{chip_id}_mask.tif", classes[..., None], geo, ("class",))
                row["mask"] = f"{chip_id}_mask.tif"
            elif task == "classification":
                row["label"] = CHIP_CLASSES[int(np.bincount(classes.ravel(), minlength=4)[1:].argmax()) + 1]
            rows.append(row)
            ids.append(chip_id)
    if manifest:
        with (out / "manifest.csv").open("w") as f:
            f.write(",".join(rows[0]) + "\n" + "".join(",".join(r.values()) + "\n" for r in rows))
    return ids


def _write(path, array, geo, descriptions):
    h, w, c = array.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=c, dtype=array.dtype.name, **geo) as dst:
        dst.write(np.moveaxis(array, -1, 0))
        dst.descriptions = tuple(descriptions)


#: acquisition days of a location's four seasons: S2 (its image ids start with the date), and S1, a day
#: earlier (its ids hold the date after the satellite, S1A or S1B: their names do not sort by date)
_SSL4EO_DAYS = ("20200312", "20200607", "20200903", "20201204")
_SSL4EO_S1_DAYS = ("20200311", "20200606", "20200902", "20201203")


def generate_ssl4eo(out, locations=4, size=48, seed=0, *, level="l1c"):
    """Writes `locations` synthetic locations in the SSL4EO-S12 layout under `out` (see :mod:`sslrs_tf.data.ssl4eo`).

    Each location is a synthetic scene seen in four seasons: ``s1/<id>/<S1 image id>/VV.tif, VH.tif`` (float32
    dB, `size` px) and ``s2c/<id>/<S2 image id>/B1.tif ...`` (``s2a`` for ``level="l2a"``, without B10; uint16)
    with the 20 m bands at size / 2 px and the 60 m bands at size / 6 px (block means of the 10 m image), in
    EPSG:4326. `size` must be a multiple of 6.

    Returns:
        The location ids, in the order written.
    """
    from sslrs_tf.data import ssl4eo

    if size % 6:
        raise UserError(f"size must be a multiple of 6 (the 60 m bands are size / 6 px). Received: {size}")
    out = pathlib.Path(out)
    folder, bands = ssl4eo.LEVELS[level]
    coarse = {"B05": 2, "B06": 2, "B07": 2, "B8A": 2, "B11": 2, "B12": 2, "B01": 6, "B09": 6, "B10": 6}
    ids = []
    for loc in range(locations):
        loc_id = f"{loc:07d}"
        pixel = 10.0 / 111_320
        for t, season in enumerate(layout.SEASONS):
            rng = np.random.default_rng([seed, 8, loc, t])
            data = Scene(rng, season, size).patch(0)
            s1 = np.nan_to_num(data["s1"], nan=-30.0)
            day, s1_day, sat = _SSL4EO_DAYS[t], _SSL4EO_S1_DAYS[t], "S1B" if t % 2 == 0 else "S1A"
            for sensor, name in (("s1", f"{sat}_IW_GRDH_1SDV_{s1_day}T051022_{s1_day}T051047_032073_03B53F_6A2E"),
                                 (folder, f"{day}T101559_{day}T101817_T32TQM")):
                season_dir = out / sensor / loc_id / name
                season_dir.mkdir(parents=True, exist_ok=True)
                if sensor == "s1":
                    files = {b: s1[..., i] for i, b in enumerate(("VV", "VH"))}
                else:
                    files = {}
                    for b in bands:
                        band = data["s2"][..., _S2_NAMES.index(b)].astype(np.float64)
                        f = coarse.get(b, 1)
                        band = band.reshape(size // f, f, size // f, f).mean(axis=(1, 3))
                        files[b] = np.rint(band).astype(np.uint16)
                for b, array in files.items():
                    h = array.shape[0]
                    geo = dict(crs="EPSG:4326", transform=from_origin(10.0 + loc * 0.1, 45.0, pixel * size / h,
                                                                       pixel * size / h))
                    _write(season_dir / ssl4eo.band_file(b), array[..., None], geo, (b,))
        ids.append(loc_id)
    return ids


def main(argv=None):
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Write a synthetic Sentinel world (SEN12MS and DFC2020 layouts).")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--patches", type=int, default=400, help="SEN12MS triplets (default 400)")
    parser.add_argument("--size", type=int, default=64, help="patch size in pixels (default 64; real data: 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dfc-validation", type=int, default=None, help="DFC2020 validation patches (default patches/4)")
    parser.add_argument("--dfc-test", type=int, default=None, help="DFC2020 test patches (default patches/4)")
    args = parser.parse_args(argv)

    def action():
        params = generate(args.out, args.patches, args.size, args.seed, args.dfc_validation, args.dfc_test)
        print(f"synthetic world (SYNTHETIC data, not real Sentinel imagery) written to {args.out}: "
              f"{params['patches']} SEN12MS triplets, {params['dfc_validation']} + {params['dfc_test']} DFC2020 "
              f"patches, {params['size']} px")

    return run_entry_point(action)


if __name__ == "__main__":
    sys.exit(main())
