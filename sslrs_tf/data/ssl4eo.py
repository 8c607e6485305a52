"""SSL4EO-S12 as it lies on disk (Wang et al. 2022, mediaTUM record 1660427): one location's seasons.

The extracted archives hold one folder per product, one per location, one per season, one GeoTIFF
per band::

    s1/0000000/<S1 image id>/VV.tif, VH.tif                       float32 dB, 264 x 264 px
    s2c/0000000/<S2 image id>/B1.tif ... B12.tif (13 bands, L1C)  uint16; 10 m bands 264 px,
    s2a/0000000/<S2 image id>/B1.tif ... B12.tif (12, no B10, L2A) 20 m bands 132 px, 60 m bands 44 px

A season's folder is named after the Earth Engine image it was cut from, which starts (S2) or
holds (S1) its acquisition date; the S1 and S2 images of one location were chosen in the same
four windows of the year, so the seasons of the two sensors are paired in date order. Bands coarser
than 10 m are repeated to the 10 m grid (nearest neighbour, as torchgeo's reader reads them; the
dataset authors' own loader interpolates bilinearly).
"""

import re

import numpy as np
from rasterio.enums import Resampling

from sslrs_tf.data.bands import S1_BANDS, S2_BANDS
from sslrs_tf.data.geotiff import open_raster, read_bands
from sslrs_tf.errors import DataError

#: the S2 product folders and their bands (file names ``B1.tif`` ... in this library's spelling)
LEVELS = {"l1c": ("s2c", S2_BANDS), "l2a": ("s2a", tuple(b for b in S2_BANDS if b != "B10"))}
SEASONS = 4
#: a band's pixel size over the 10 m grid's: 10 m, 20 m, 60 m bands
COARSER = (1, 2, 6)
_DATE = re.compile(r"(?:^|_)(\d{8})T\d{6}")


def band_file(band):
    """The file name of a band in SSL4EO-S12: ``B01`` -> ``B1.tif``, ``B8A`` -> ``B8A.tif``, ``VV`` -> ``VV.tif``."""
    return f"B{int(band[1:])}.tif" if re.fullmatch(r"B\d\d", band) else f"{band}.tif"


def season_date(name):
    """The acquisition date (``YYYYMMDD``) in a season folder's name, or None."""
    found = _DATE.search(name)
    return found.group(1) if found else None


def seasons(folder):
    """The season folders of one location's product folder, in date order (undated last, by name)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir()]
    return sorted(found, key=lambda p: (season_date(p.name) or "99999999", p.name))


def read_band(path, size):
    """One band file as a ``[size, size]`` array: a coarser band (size / 2, size / 6) repeated onto the grid.

    A band a pixel off its grid (an export's rounding: 263 instead of 264 px) is resampled onto it by
    nearest neighbour, as torchgeo's reader reads every band; any other size is refused, naming the file.
    """
    with open_raster(path) as src:
        if src.count != 1:
            raise DataError(path, f"has {src.count} bands, expected 1 (one band per file)")
        h, w = src.height, src.width
        if h == w and size % h == 0:
            data = read_bands(src, path, 1)
            return np.repeat(np.repeat(data, size // h, 0), size // h, 1) if h < size else data
        if any(abs(h - size // f) <= 1 and abs(w - size // f) <= 1 for f in COARSER):
            return read_bands(src, path, 1, out_shape=(size, size), resampling=Resampling.nearest)
    raise DataError(path, f"is {h} x {w} px, expected {size} x {size} or {size // 2} or {size // 6} px square "
                          "(a 20 m or 60 m band)")


def read_season(folder, bands, size, dtype):
    """``[size, size, bands]`` of one season folder's band files."""
    out = []
    for band in bands:
        path = folder / band_file(band)
        if not path.exists():
            raise DataError(path, f"is missing (a season folder holds one file per band: {', '.join(bands)})")
        out.append(read_band(path, size))
    data = np.stack(out, -1)
    if dtype == np.uint16 and data.dtype.kind == "i":
        data = np.clip(data, 0, None)
    if data.dtype.kind == "f" and dtype == np.uint16:
        raise DataError(folder, f"holds {data.dtype} S2 bands, expected integers (reflectance x 10 000)")
    return data.astype(dtype)


def load_location(item, size, level, count, on_error, report, split):
    """A builder's loader: ``(key, example)`` of one location, or None when it is skipped (counted in `report`).

    `item` is ``(key, s1 folder, s2 folder)``; the first `count` seasons of each, in date order, are paired.
    Skipped: fewer than `count` seasons of either sensor (``missing_season``), S1 with non-finite values
    (``s1_nan``); a broken file raises a :class:`DataError`, or is counted (``bad_file``) with ``on_error: skip``.
    """
    key, s1_dir, s2_dir = item
    s2_bands = LEVELS[level][1]
    found = {"s1": seasons(s1_dir)[:count], "s2": seasons(s2_dir)[:count]}
    for kind, folders in found.items():
        if len(folders) < count:
            report.skip(split, "missing_season", s1_dir if kind == "s1" else s2_dir)
            return None
    try:
        s1 = np.stack([read_season(f, S1_BANDS, size, np.float32) for f in found["s1"]])
        s2 = np.stack([read_season(f, s2_bands, size, np.uint16) for f in found["s2"]])
    except DataError as err:
        if on_error == "raise":
            raise
        report.skip(split, "bad_file", err.path)
        return None
    if not np.isfinite(s1).all():
        report.skip(split, "s1_nan", s1_dir)
        return None
    return key, {"s1": s1, "s2": s2, "s1_max": s1.max(axis=(1, 2)), "s2_max": s2.max(axis=(1, 2)), "id": key,
                 "s1_dates": [season_date(f.name) or "" for f in found["s1"]],
                 "s2_dates": [season_date(f.name) or "" for f in found["s2"]]}
