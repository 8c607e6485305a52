"""Whole Sentinel-1/2 scenes read window by window, on one grid, with the bands a model needs.

The grid is the Sentinel-2 raster's (the Sentinel-1 raster's when the model reads S1 alone).
A Sentinel-1 raster on another CRS, resolution or grid is resampled onto it on the fly
(rasterio's ``WarpedVRT``, bilinear), window by window, so memory does not grow with the scene.
Bands are matched by name: the rasters' band descriptions when they name every band, else
the names the user gives, else the SEN12MS order. Pixels that are nodata or NaN in any band
the model reads are invalid: they are handed to the model as NaN (which the normalisation
fills, as in training) and written out as nodata.
"""

import contextlib
import dataclasses
import re

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from sslrs_tf.data.bands import MODALITY_BANDS
from sslrs_tf.errors import UserError

#: ``--s1-units``: how S1 backscatter is stored
S1_UNITS = ("db", "linear")


def band_key(name):
    """A band name compared loosely: case, spaces and a leading zero do not matter (``b2`` == ``B02``)."""
    name = re.sub(r"\s+", "", str(name)).upper()
    match = re.fullmatch(r"B0*(\d+A?)", name)
    return f"B{match.group(1)}" if match else name


def raster_bands(src, sensor, given=None, option="--s2-bands"):
    """The band names of `src` in file order: `given` (the user's list), else its band descriptions when they
    name a band of `sensor` each, else the SEN12MS order when the band count is that of `sensor`.

    Raises:
        UserError: the names cannot be known, or `given` has another length than the raster's band count.
    """
    known = {band_key(b): b for b in MODALITY_BANDS[sensor]}
    if given:
        if len(given) != src.count:
            raise UserError(f"{option} names {len(given)} bands; {src.name} has {src.count}")
        return tuple(known.get(band_key(b), b) for b in given)
    descriptions = src.descriptions
    if all(d and band_key(d) in known for d in descriptions):
        return tuple(known[band_key(d)] for d in descriptions)
    if src.count == len(MODALITY_BANDS[sensor]):
        return MODALITY_BANDS[sensor]
    raise UserError(f"{src.name} has {src.count} bands without band names; name them with {option} "
                    f"(e.g. {option} {','.join(MODALITY_BANDS[sensor][:3])},...)")


@dataclasses.dataclass
class SensorRaster:
    """One sensor's raster opened for reading on the scene's grid.

    Attributes:
        sensor: ``"s1"`` or ``"s2"``.
        path: its file.
        dataset: what windows are read from: the file, or a warped view of it on the scene's grid.
        indexes: the (1-based) band of the file for each band the model needs, in the model's order.
        nodata: the file's nodata value (None: none declared).
        linear: S1 stored as linear power (converted to dB as read).
    """

    sensor: str
    path: str
    dataset: object
    indexes: list
    nodata: object
    linear: bool = False

    def read(self, window):
        """``([h, w, C] float32 raw values, [h, w] valid)`` of `window` on the scene's grid; invalid pixels are NaN."""
        data = self.dataset.read(self.indexes, window=window).astype(np.float32)
        valid = np.isfinite(data).all(axis=0)
        if self.nodata is not None and not np.isnan(self.nodata):
            valid &= (data != np.float32(self.nodata)).all(axis=0)
        if self.linear:
            with np.errstate(divide="ignore", invalid="ignore"):
                data = 10.0 * np.log10(data)  # 0 power -> -inf dB, clipped to the lower bound like any value below it
        data = np.moveaxis(data, 0, -1)
        data[~valid] = np.nan
        return data, valid


class Scene:
    """The rasters of one scene on one grid, read window by window.

    Args:
        paths: ``{"s1": path, "s2": path}`` (the sensors given).
        needed: ``{sensor: band names}`` the model reads, in its order.
        bands: ``{sensor: names}`` of the rasters' bands in file order where the user gave them.
        s1_units: ``"db"`` or ``"linear"`` (power).

    Attributes:
        crs, transform, width, height: the grid (the S2 raster's, or the S1 raster's without S2).
        rasters: ``{sensor: SensorRaster}``.

    Raises:
        UserError: a sensor the model reads is not given, a raster cannot be read, has no CRS or lacks a band the
            model needs, or the rasters do not overlap.
    """

    def __init__(self, paths, needed, bands=None, s1_units="db"):
        if s1_units not in S1_UNITS:
            raise UserError(f"--s1-units must be one of {', '.join(S1_UNITS)}. Received: {s1_units!r}")
        missing = [m for m in needed if not paths.get(m)]
        if missing:
            raise UserError(f"the model reads {' and '.join(m.upper() for m in needed)}: give --{missing[0]}")
        self._stack = contextlib.ExitStack()
        bands = bands or {}
        grid_sensor = "s2" if "s2" in needed else "s1"
        files = {m: self._open(paths[m]) for m in needed}
        grid = files[grid_sensor]
        self.crs, self.transform, self.width, self.height = grid.crs, grid.transform, grid.width, grid.height
        self.rasters = {}
        for m in needed:
            src = files[m]
            names = raster_bands(src, m, bands.get(m), f"--{m}-bands")
            lacking = [b for b in needed[m] if b not in names]
            if lacking:
                raise UserError(f"--{m} {paths[m]} lacks band {lacking[0]}, which the model needs (it has "
                                f"{', '.join(names)})")
            dataset = src
            if m != grid_sensor and (src.crs != self.crs or src.transform != self.transform
                                     or (src.width, src.height) != (self.width, self.height)):
                west, south, east, north = transform_bounds(src.crs, self.crs, *src.bounds)
                g = grid.bounds
                if west >= g.right or east <= g.left or south >= g.top or north <= g.bottom:
                    raise UserError(f"--{m} {paths[m]} does not overlap --{grid_sensor} {paths[grid_sensor]} "
                                    f"(bounds in {self.crs}: {west:.0f}, {south:.0f}, {east:.0f}, {north:.0f} "
                                    f"against {g.left:.0f}, {g.bottom:.0f}, {g.right:.0f}, {g.top:.0f})")
                # Outside the other raster's footprint is NaN: invalid, written as nodata. A negligible error
                # tolerance instead of GDAL's 1/8 px approximation along lines (0 makes rasterio fail): a pixel's
                # value does not depend on the window it is read in, so overlapping tiles agree.
                dataset = self._stack.enter_context(WarpedVRT(
                    src, crs=self.crs, transform=self.transform, width=self.width, height=self.height,
                    resampling=Resampling.bilinear, src_nodata=src.nodata, nodata=np.nan, dtype="float32",
                    tolerance=1e-9))
            self.rasters[m] = SensorRaster(m, str(paths[m]), dataset, [names.index(b) + 1 for b in needed[m]],
                                           dataset.nodata, linear=(m == "s1" and s1_units == "linear"))

    def _open(self, path):
        try:
            src = self._stack.enter_context(rasterio.open(path))
        except (RasterioError, OSError) as err:
            raise UserError(f"{path}: cannot be read as a raster ({str(err).splitlines()[0]})") from None
        if src.crs is None:
            raise UserError(f"{path} has no CRS (not georeferenced); maps need one")
        return src

    def read(self, top, left, size):
        """``({sensor: [size, size, C] raw float32}, [size, size] valid)`` of the square at (`top`, `left`); what
        lies outside the scene is invalid (NaN)."""
        window = Window(left, top, size, size).intersection(Window(0, 0, self.width, self.height))
        r0, c0 = int(window.row_off) - top, int(window.col_off) - left
        h, w = int(window.height), int(window.width)
        valid = np.zeros((size, size), bool)
        valid[r0:r0 + h, c0:c0 + w] = True
        out = {}
        for m, raster in self.rasters.items():
            data, ok = raster.read(window)
            full = np.full((size, size, data.shape[-1]), np.nan, np.float32)
            full[r0:r0 + h, c0:c0 + w] = data
            valid[r0:r0 + h, c0:c0 + w] &= ok
            out[m] = full
        return out, valid

    def close(self):
        """Closes the rasters."""
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
