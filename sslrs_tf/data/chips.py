"""Your own co-registered Sentinel-1/2 chips: the manifest, the folder pattern, and reading one pair.

A dataset of chips is a folder (the TFDS ``manual_dir``) holding either

* ``manifest.csv``, one row per location with the columns ``s1`` and ``s2`` (paths relative to
  the folder) and optionally ``id``, ``label`` (a class name: classification), ``mask`` (a label
  raster: segmentation) and ``split``; or
* no manifest: every ``{id}_s2.tif`` below the folder with its ``{id}_s1.tif`` beside it (and a
  ``{id}_mask.tif``, if there is one, as its label raster).

Reading a pair (:func:`load_chip`) checks what a dataset of chips must agree on — one grid for S1,
S2 and the mask (CRS, transform, size), the configured chip size, S2's bands by name — and sorts
problems the way the SEN12MS builder does: a missing file or a chip with too many nodata pixels is
skipped and counted; a file that cannot be used as it is (unreadable, wrong bands, a grid that differs)
raises a :class:`~sslrs_tf.errors.DataError` naming the file, or is counted with ``on_error: skip``.

Stored as the SEN12MS builder stores patches (raw values, so that normalisation and crops stay
runtime choices): ``s1`` float32 dB ``[P, P, 2]`` (linear power converted), ``s2`` uint16
reflectance x 10 000 ``[P, P, bands]``, ``mask`` uint8 class indices ``[P, P]`` (255: ignored;
a classification chip's mask is its class everywhere).
"""

import csv
import dataclasses
import io
import re

import numpy as np
from rasterio.errors import RasterioError
from rasterio.warp import Resampling, reproject

from sslrs_tf.data.bands import S1_BANDS, S2_BANDS
from sslrs_tf.data.geotiff import open_raster, read_bands
from sslrs_tf.data.tfds_common import unit_hash
from sslrs_tf.errors import DataError, UserError

MANIFEST = "manifest.csv"
COLUMNS = ("id", "s1", "s2", "label", "mask", "split")
S1_UNITS = ("db", "linear")
ON_MISALIGNED = ("error", "resample")
IGNORE = 255
_SPLIT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_BAND = re.compile(r"^B0*(\d+)(A?)$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Chip:
    """One location: its files and, where given, its class name and split.

    Args:
        id: a name unique in the dataset.
        s1, s2: paths of the two rasters.
        mask: path of the label raster, or None.
        label: class name (classification), or None.
        split: the split named by the manifest, or None (then a stable hash picks it).
        where: where the chip was listed, for messages (``manifest.csv line 7``).
    """

    id: str
    s1: object
    s2: object
    mask: object = None
    label: str = None
    split: str = None
    where: str = ""


def band_name(name):
    """A band description in this library's spelling: ``B1`` -> ``B01``, ``b8a`` -> ``B8A``, ``vv`` -> ``VV``."""
    text = str(name or "").strip()
    found = _BAND.match(text)
    if not found:
        return text.upper()
    number = int(found.group(1))
    return f"B{number}A" if found.group(2) else f"B{number:02d}"


def read_manifest(root, name=MANIFEST):
    """The :class:`Chip` rows of ``root/name``; a :class:`UserError` names the line of a bad row."""
    path = root / name
    with path.open("rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")  # a spreadsheet's UTF-8 starts with a byte-order mark
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8 CSV") from None
    try:
        return _rows(root, path, csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise UserError(f"{path}: not a CSV file ({err})") from None


def _rows(root, path, reader):
    """The :class:`Chip` rows of a manifest's `reader` (a ``csv.DictReader``)."""
    header = [c.strip() for c in reader.fieldnames or []]
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise UserError(f"{path}: unknown column {unknown[0]!r}; expected s1, s2 and optionally "
                        f"{', '.join(c for c in COLUMNS if c not in ('s1', 's2'))}")
    missing = [c for c in ("s1", "s2") if c not in header]
    if missing:
        raise UserError(f"{path}: no column {missing[0]!r}; a manifest needs s1 and s2 (paths relative to "
                        f"{root})")
    if "label" in header and "mask" in header:
        raise UserError(f"{path}: has both a label and a mask column; a dataset is either classification "
                        "(label: a class name) or segmentation (mask: a label raster)")
    chips, seen = [], {}
    for line, row in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        where = f"{path} line {line}"
        for column in ("s1", "s2") + (("mask",) if "mask" in header else ()):
            if not row.get(column):
                raise UserError(f"{where}: empty {column}")
        if "label" in header and not row.get("label"):
            raise UserError(f"{where}: empty label")
        split = row.get("split") or None
        if split is not None and not _SPLIT_NAME.match(split):
            raise UserError(f"{where}: split {split!r} is not a split name (lower-case letters, digits, _)")
        chip_id = row.get("id") or _stem(row["s2"])
        if chip_id in seen:
            raise UserError(f"{where}: id {chip_id!r} repeats {seen[chip_id]}")
        seen[chip_id] = f"line {line}"
        chips.append(Chip(id=chip_id, s1=root / row["s1"], s2=root / row["s2"],
                          mask=root / row["mask"] if row.get("mask") else None,
                          label=row.get("label") or None, split=split, where=where))
    if not chips:
        raise UserError(f"{path}: no rows; expected one row per location (s1, s2, ...)")
    return chips


def find_chips(root):
    """The :class:`Chip` of every ``{id}_s2.tif`` below `root` (its ``{id}_s1.tif`` and ``{id}_mask.tif``
    beside it), sorted by id; the id is the path relative to `root` without ``_s2.tif``."""
    chips = []
    for s2 in sorted(_files(root, "_s2.tif"), key=str):
        stem = str(s2)[: -len("_s2.tif")]
        chip_id = str(s2.relative_to(root))[: -len("_s2.tif")]
        mask = s2.parent / (s2.name[: -len("_s2.tif")] + "_mask.tif")
        chips.append(Chip(id=chip_id, s1=type(s2)(stem + "_s1.tif"), s2=s2, mask=mask if mask.exists() else None,
                          where=str(s2)))
    return chips


def _files(folder, suffix):
    # A walk by iterdir: the epath of a bucket (gs://) has no recursive glob.
    for path in folder.iterdir():
        if path.is_dir():
            yield from _files(path, suffix)
        elif path.name.endswith(suffix):
            yield path


def _stem(path):
    name = str(path).replace("\\", "/").rsplit("/", 1)[-1]
    name = name[:-4] if name.lower().endswith((".tif", ".tiff")) else name
    return name[:-3] if name.endswith("_s2") else name


def split_of(chip, test_fraction):
    """The chip's split: the manifest's, else ``test`` for a stable-hash share `test_fraction` of ids, else ``train``."""
    if chip.split:
        return chip.split
    return "test" if unit_hash("test", chip.id) < test_fraction else "train"


def class_codes(classes):
    """``{code in the label raster: class index}`` and the class names of a config's ``classes``: a list (code =
    position) or a mapping ``{code: name}`` (class index in the order of the codes)."""
    if isinstance(classes, str) or not isinstance(classes, (dict, list, tuple)):
        raise UserError(f"config classes must be a list of class names or a mapping {{code: name}}. "
                        f"Received: classes={classes!r}")
    if isinstance(classes, dict):
        try:
            pairs = sorted((int(k), str(v)) for k, v in classes.items())
        except (TypeError, ValueError):
            raise UserError(f"config classes: mapping keys must be integer codes. Received: classes={classes!r}") \
                from None
    else:
        pairs = list(enumerate(map(str, classes)))
    names = [n for _, n in pairs]
    if not names or len(set(names)) != len(names) or len(names) > IGNORE:
        raise UserError(f"config classes must name 1 to {IGNORE} distinct classes. Received: classes={classes!r}")
    return {code: i for i, (code, _) in enumerate(pairs)}, tuple(names)


@dataclasses.dataclass(frozen=True)
class ChipSettings:
    """How chips are read: the builder config's fields (``tfds_builders/paired_chips``), resolved.

    Args:
        patch_size: chip height and width in pixels.
        s2_bands: the S2 bands stored, by name, in order.
        named_bands: whether the config named the bands (then a file without band descriptions holding
            as many bands is taken in that order).
        s1_units: ``"db"`` or ``"linear"`` (power; stored as dB).
        s2_scale: factor from a float S2 file's values to reflectance x 10 000 (None: float refused).
        on_misaligned: ``"error"`` or ``"resample"`` (S1 and the mask warped onto S2's grid).
        on_error: ``"raise"`` or ``"skip"``, for the builder.
        max_nodata: largest share of nodata pixels (S1 or S2) a chip may have; more: skipped.
        task: None, ``"classification"`` (a label per chip) or ``"segmentation"`` (a mask).
        classes: the class names.
        codes: segmentation: ``{code in the label raster: class index}``.
    """

    patch_size: int = 256
    s2_bands: tuple = S2_BANDS
    named_bands: bool = False
    s1_units: str = "db"
    s2_scale: float = None
    on_misaligned: str = "error"
    on_error: str = "raise"
    max_nodata: float = 0.0
    task: str = None
    classes: tuple = ()
    codes: dict = None


class Skip(Exception):
    """A chip skipped and counted, not an error: `reason`, `path`."""

    def __init__(self, reason, path):
        super().__init__(reason)
        self.reason, self.path = reason, path


class Misaligned(DataError):
    """S1 or the mask is not on the S2 file's grid (and the config does not resample)."""


def same_grid(a, b):
    """Whether two open rasters share CRS, size and transform (origins within 1 % of a pixel, pixel sizes within
    1e-6 of theirs: exports of one grid differ in the last digits)."""
    if a.crs != b.crs or (a.height, a.width) != (b.height, b.width):
        return False
    ta, tb = a.transform, b.transform
    pixel = max(abs(ta.a), abs(ta.e), 1e-12)
    scale_ok = all(abs(x - y) <= 1e-6 * pixel for x, y in ((ta.a, tb.a), (ta.b, tb.b), (ta.d, tb.d), (ta.e, tb.e)))
    return scale_ok and abs(ta.c - tb.c) <= 0.01 * pixel and abs(ta.f - tb.f) <= 0.01 * pixel


def _grid(src):
    return f"{src.crs}, {src.height} x {src.width} px, origin ({src.transform.c:.6g}, {src.transform.f:.6g}), " \
           f"pixel ({src.transform.a:.6g}, {src.transform.e:.6g})"


def _s2_indexes(src, path, settings):
    """Rasterio band indexes of the stored S2 bands in `src`: by description where the file names its bands."""
    names = [band_name(d) for d in src.descriptions]
    if all(names) and any(n in S2_BANDS for n in names):
        missing = [b for b in settings.s2_bands if b not in names]
        if missing:
            raise DataError(path, f"has no band {missing[0]} (its bands: {', '.join(names)})")
        return [names.index(b) + 1 for b in settings.s2_bands]
    if settings.named_bands and src.count == len(settings.s2_bands):
        return list(range(1, src.count + 1))  # the config names the file's bands, in order
    if src.count == len(S2_BANDS):
        return [S2_BANDS.index(b) + 1 for b in settings.s2_bands]  # 13 unnamed bands: SEN12MS order
    raise DataError(path, f"has {src.count} band(s) without band names; name them in the config's s2_bands "
                          f"(in file order) or give the 13 bands {S2_BANDS[0]}..{S2_BANDS[-1]}")


def _s1_indexes(src, path):
    names = [band_name(d) for d in src.descriptions]
    if src.count != 2:
        raise DataError(path, f"has {src.count} band(s), expected 2 (VV, VH) for an s1 file")
    if all(names) and set(names) == set(S1_BANDS):
        return [names.index(b) + 1 for b in S1_BANDS]
    return [1, 2]


def _invalid(data, nodata):
    bad = ~np.isfinite(data) if data.dtype.kind == "f" else np.zeros(data.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        bad |= data == nodata
    return bad


def _s2_values(data, path, settings):
    """S2 as reflectance x 10 000 in uint16, from uint16, int16 (negatives: 0) or float (times s2_scale)."""
    if data.dtype == np.uint16:
        return data
    if data.dtype == np.int16:
        return np.clip(data, 0, None).astype(np.uint16)
    if data.dtype.kind == "f":
        if settings.s2_scale is None:
            raise DataError(path, f"holds {data.dtype} values; set the config's s2_scale (10000 for reflectance in "
                                  "0..1, 1 for reflectance x 10 000)")
        scaled = np.nan_to_num(data.astype(np.float64) * settings.s2_scale, nan=0.0)
        return np.clip(np.rint(scaled), 0, 65535).astype(np.uint16)
    raise DataError(path, f"has dtype {data.dtype}, expected uint16, int16 or float for an s2 file")


def _to_db(linear):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(linear > 0, 10.0 * np.log10(linear), np.nan).astype(np.float32)


def _warp(data, src, dst, resampling, fill, path):
    out = np.full((data.shape[0], dst.height, dst.width), fill, data.dtype)
    try:
        reproject(data, out, src_transform=src.transform, src_crs=src.crs, dst_transform=dst.transform,
                  dst_crs=dst.crs, resampling=resampling, src_nodata=fill, dst_nodata=fill)
    except (RasterioError, ValueError) as err:  # e.g. a file without a CRS
        raise DataError(path, f"cannot be warped onto the S2 grid ({str(err).splitlines()[0]})") from None
    return out


def load_chip(chip, settings):
    """Reads one chip into the stored arrays (see the module doc).

    Raises:
        Skip: a file is missing, or more than ``max_nodata`` of its pixels are nodata.
        DataError: a file cannot be used as it is (the message names it and what was expected).
    """
    for kind in ("s1", "s2", "mask"):
        path = getattr(chip, kind)
        if path is not None and not path.exists():
            raise Skip(f"missing_{kind}", path)
    size = settings.patch_size
    with open_raster(chip.s2) as s2src:
        if (s2src.height, s2src.width) != (size, size):
            raise DataError(chip.s2, f"is {s2src.height} x {s2src.width} px, expected {size} x {size} (patch_size)")
        s2raw = read_bands(s2src, chip.s2, _s2_indexes(s2src, chip.s2, settings))
        s2_invalid = _invalid(s2raw, s2src.nodata).any(axis=0)
        s2 = _s2_values(s2raw, chip.s2, settings)
        s2[:, s2_invalid] = 0
        with open_raster(chip.s1) as s1src:
            s1 = read_bands(s1src, chip.s1, _s1_indexes(s1src, chip.s1)).astype(np.float32)
            s1[_invalid(s1, s1src.nodata)] = np.nan
            if same_grid(s1src, s2src):
                s1 = _to_db(s1) if settings.s1_units == "linear" else s1
            elif settings.on_misaligned == "resample":
                # Resampled as power, then converted: averaging dB values would bias towards dark pixels.
                linear = s1 if settings.s1_units == "linear" else np.float32(10.0) ** (s1 / np.float32(10.0))
                s1 = _to_db(_warp(linear, s1src, s2src, Resampling.bilinear, np.nan, chip.s1))
            else:
                raise Misaligned(chip.s1, f"is not on the grid of {chip.s2} ({_grid(s1src)} against "
                                         f"{_grid(s2src)}); set on_misaligned: resample to warp S1 onto S2")
        s1_invalid = np.isnan(s1).any(axis=0)
        invalid = s1_invalid | s2_invalid
        mask = None
        if chip.mask is not None:
            with open_raster(chip.mask) as msrc:
                if msrc.count != 1:
                    raise DataError(chip.mask, f"has {msrc.count} bands, expected 1 (class codes) for a mask")
                codes = read_bands(msrc, chip.mask, 1)
                if msrc.nodata is not None and not np.isnan(msrc.nodata):
                    codes = np.where(codes == msrc.nodata, -1, codes)
                if codes.dtype.kind == "f":
                    codes = np.where(np.isfinite(codes), codes, -1)
                mask = _classes(codes.astype(np.int64), settings.codes or {})
                if not same_grid(msrc, s2src):
                    if settings.on_misaligned != "resample":
                        raise Misaligned(chip.mask, f"is not on the grid of {chip.s2} ({_grid(msrc)} against "
                                                   f"{_grid(s2src)}); set on_misaligned: resample")
                    mask = _warp(mask[None], msrc, s2src, Resampling.nearest, IGNORE, chip.mask)[0]
    if invalid.mean() > settings.max_nodata:
        # Named by the file with more nodata pixels.
        raise Skip("nodata", chip.s1 if s1_invalid.sum() >= s2_invalid.sum() else chip.s2)
    s1 = np.moveaxis(s1, 0, -1)
    s2 = np.moveaxis(s2, 0, -1)
    example = {"s1": s1, "s2": s2, "s1_max": np.nanmax(np.where(np.isnan(s1), -np.inf, s1), axis=(0, 1)),
               "s2_max": s2.max(axis=(0, 1)), "id": chip.id}
    if settings.task == "classification":
        label = settings.classes.index(chip.label)
        example["mask"] = np.where(invalid, IGNORE, label).astype(np.uint8)
        example["label"] = label
    elif settings.task == "segmentation":
        mask = np.full((size, size), IGNORE, np.uint8) if mask is None else mask
        mask[invalid] = IGNORE
        example["mask"] = mask
        example["label"] = -1
    return example


def _classes(codes, table):
    """Class indices (uint8) of a label raster's codes; codes outside the table (nodata, -1, ...) -> IGNORE."""
    out = np.full(codes.shape, IGNORE, np.uint8)
    for code, index in table.items():
        out[codes == code] = index
    return out


def load_chip_example(item, settings, report, split):
    """A builder's loader (``SentinelBuilder._loader``): ``(key, example)`` of a ``(key, chip)`` item, or None when
    the chip is skipped (counted in `report`: ``missing_s1`` ..., ``nodata``, and with ``on_error: skip``
    ``misaligned`` or ``bad_file``)."""
    key, chip = item
    try:
        return key, load_chip(chip, settings)
    except Skip as skip:
        report.skip(split, skip.reason, skip.path)
    except DataError as err:
        if settings.on_error == "raise":
            raise
        report.skip(split, "misaligned" if isinstance(err, Misaligned) else "bad_file", err.path)
    return None
