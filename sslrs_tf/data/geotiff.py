"""Reading Sentinel GeoTIFF patches with rasterio, checked against what each file kind must hold.

Both TFDS builders read through :func:`read_raster`, so a file with the wrong
band count, dtype or size fails the same way everywhere: with a
:class:`~sslrs_tf.errors.DataError` naming the file and what was expected.
"""

import contextlib
import dataclasses

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from sslrs_tf.data.bands import LC_BANDS, S1_BANDS, S2_BANDS
from sslrs_tf.errors import DataError


@dataclasses.dataclass(frozen=True)
class RasterKind:
    """What one kind of file (s1, s2, lc, dfc) must contain and how it is stored.

    Args:
        name: the kind, as in the file names (``s1``, ``s2``, ``lc``, ``dfc``).
        bands: band names in file order.
        dtypes: dtypes accepted on disk.
        store_dtype: dtype of the stored tensor.
    """

    name: str
    bands: tuple
    dtypes: tuple
    store_dtype: str


KINDS = {
    "s1": RasterKind("s1", S1_BANDS, ("float32",), "float32"),
    # Some real exports store S2 as int16 (e.g. Sen1Floods11); reflectance is never
    # negative, so negatives (fill values) are clipped to 0 before the cast to uint16.
    "s2": RasterKind("s2", S2_BANDS, ("uint16", "int16"), "uint16"),
    "lc": RasterKind("lc", LC_BANDS, ("uint8", "uint16"), "uint8"),
    "dfc": RasterKind("dfc", ("DFC",), ("uint8", "uint16", "int16", "int32"), "uint8"),
}


#: the class codes of each label file's first band (SPEC: DFC-10 1..10 and IGBP 1..17, 0 = no data); a value
#: outside them is a damaged or foreign file, not a class to ignore
LABEL_CODES = {"dfc": ("DFC-10", 10), "lc": ("IGBP (band 1)", 17)}


def _open(path):
    # epath objects (what TFDS hands builders) open remote and mocked files alike;
    # rasterio reads from the file object.
    return path.open("rb") if hasattr(path, "open") else open(path, "rb")  # noqa: SIM115


def _unreadable(path, err):
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return DataError(path, f"cannot be read as a GeoTIFF ({detail})")


@contextlib.contextmanager
def open_raster(path):
    """The open rasterio dataset of `path` (a path-like or ``epath.Path``), closed with its file after the
    ``with`` block; a file that cannot be opened as a GeoTIFF raises a :class:`DataError` naming it."""
    with contextlib.ExitStack() as stack:
        try:
            src = stack.enter_context(rasterio.open(stack.enter_context(_open(path))))
        except (RasterioError, OSError, ValueError) as err:
            raise _unreadable(path, err) from None
        yield src


def read_bands(src, path, *args, **kwargs):
    """``src.read(*args, **kwargs)``; a truncated or damaged file raises a :class:`DataError` naming `path`."""
    try:
        return src.read(*args, **kwargs)
    except (RasterioError, OSError, ValueError) as err:
        raise _unreadable(path, err) from None


def read_raster(path, kind, size=None):
    """Reads one GeoTIFF as an ``[H, W, C]`` array of the kind's stored dtype.

    Args:
        path: a path-like or ``epath.Path``.
        kind: ``"s1"``, ``"s2"``, ``"lc"`` or ``"dfc"`` (see :data:`KINDS`).
        size: expected height and width in pixels, or ``None`` to accept any.

    Raises:
        DataError: the file is unreadable or truncated, or has the wrong band
            count, dtype, size or value range.
    """
    spec = KINDS[kind]
    with open_raster(path) as src:
        count, dtype, shape = src.count, src.dtypes[0], (src.height, src.width)
        if count != len(spec.bands):
            raise DataError(path, f"has {count} band(s), expected {len(spec.bands)} ({', '.join(spec.bands)}) for a {kind} file")
        if dtype not in spec.dtypes:
            raise DataError(path, f"has dtype {dtype}, expected {' or '.join(spec.dtypes)} for a {kind} file")
        if size is not None and shape != (size, size):
            raise DataError(path, f"is {shape[0]} x {shape[1]} px, expected {size} x {size} (patch_size)")
        data = read_bands(src, path)
    data = np.moveaxis(data, 0, -1)
    if kind in LABEL_CODES:
        scheme, top = LABEL_CODES[kind]
        codes = data[..., 0]
        outside = (codes < 0) | (codes > top)
        if outside.any():
            values = np.unique(codes[outside])
            shown = ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")
            raise DataError(path, f"has {scheme} values outside its classes 0..{top} ({shown}; 0 = no data) "
                                  f"in {int(outside.sum())} pixel(s)")
    if spec.store_dtype == "uint8" and data.dtype != np.uint8:
        if data.min() < 0 or data.max() > 255:
            raise DataError(path, f"has values in [{data.min()}, {data.max()}], expected class codes in [0, 255]")
    elif kind == "s2" and data.dtype == np.int16:
        data = np.clip(data, 0, None)
    out = data.astype(spec.store_dtype)
    return out[..., 0] if kind == "dfc" else out
