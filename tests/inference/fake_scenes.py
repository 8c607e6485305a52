"""Fake Sentinel scenes for the inference tests: real geometry (a UTM grid for S2, S1 in geographic
coordinates or on the same grid), synthetic values, nodata where asked."""

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform

from sslrs_tf.data.bands import S1_BANDS, S2_BANDS

#: the S2 grid's CRS (UTM 33N) and upper-left corner (metres)
UTM = "EPSG:32633"
ORIGIN = (500_000.0, 4_650_000.0)


def scene_arrays(height, width, seed=0):
    """``(s2 [13, H, W] uint16, s1 [2, H, W] float32 dB)``: smooth fields (blobs a model can tell apart) plus
    noise, S2 in [1, 12 000] (0 is left for nodata) and S1 partly outside [-25, 0] dB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / 17.0
    field = np.sin(yy) * np.cos(xx * 0.7) + 0.5 * np.sin(0.3 * yy + xx)
    s2 = np.stack([np.clip(5000 + 2000 * field * (1 + 0.05 * b) + rng.normal(0, 300, field.shape), 1, 12000)
                   for b in range(13)]).astype(np.uint16)
    s1 = np.stack([-12.0 + 8 * field + rng.normal(0, 1, field.shape), -19.0 + 6 * field]).astype(np.float32)
    return s2, s1


def write_s2(path, s2, transform=None, nodata=0, descriptions=True, crs=UTM, dtype="uint16"):
    """Writes a 13-band S2 GeoTIFF on a 10 m UTM grid (band descriptions B01..B12 unless told not to)."""
    transform = transform or from_origin(*ORIGIN, 10.0, 10.0)
    with rasterio.open(path, "w", driver="GTiff", width=s2.shape[2], height=s2.shape[1], count=s2.shape[0],
                       dtype=dtype, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(s2.astype(dtype))
        if descriptions:
            for i, band in enumerate(S2_BANDS[:s2.shape[0]], 1):
                dst.set_band_description(i, band)
    return path


def write_s1(path, s1, transform=None, crs=UTM):
    """Writes a 2-band S1 GeoTIFF (VV, VH in dB) on the S2 grid, or wherever `crs`/`transform` say."""
    transform = transform or from_origin(*ORIGIN, 10.0, 10.0)
    with rasterio.open(path, "w", driver="GTiff", width=s1.shape[2], height=s1.shape[1], count=2, dtype="float32",
                       crs=crs, transform=transform) as dst:
        dst.write(s1)
        for i, band in enumerate(S1_BANDS, 1):
            dst.set_band_description(i, band)
    return path


def write_s1_geographic(path, s1, margin):
    """S1 in EPSG:4326 (its own grid, as a GRD product delivered in lon/lat): `s1` is on the UTM grid extended by
    `margin` px on every side of the scene, reprojected (bilinear) to lon/lat, so that it covers the whole scene."""
    from rasterio.warp import reproject

    src_transform = from_origin(ORIGIN[0] - 10 * margin, ORIGIN[1] + 10 * margin, 10.0, 10.0)
    height, width = s1.shape[1:]
    bounds = rasterio.transform.array_bounds(height, width, src_transform)
    dst_transform, w, h = calculate_default_transform(UTM, "EPSG:4326", width, height, *bounds)
    # Coarser than the scene (2x): warped onto the 10 m grid, bilinear is plain bilinear interpolation.
    dst_transform, w, h = dst_transform @ rasterio.Affine.scale(2), w // 2 + 1, h // 2 + 1
    out = np.full((2, h, w), np.nan, np.float32)
    for b in range(2):
        reproject(s1[b], out[b], src_transform=src_transform, src_crs=UTM, dst_transform=dst_transform,
                  dst_crs="EPSG:4326", resampling=rasterio.enums.Resampling.bilinear, dst_nodata=np.nan)
    return write_s1(path, out, dst_transform, "EPSG:4326")
