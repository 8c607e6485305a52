"""Clipping and the normalisations used with Sentinel-1/2 data (SPEC §3), as TF ops.

* ``per_sample_max`` — the papers' preprocessing: clip, shift, divide every channel
  by the maximum of the array given (the crop the model sees) plus 1e-5;
* ``per_patch_max`` — the same, divided by the maxima of the whole stored patch the
  crop was cut from (no epsilon): this library's behaviour before it followed the papers;
* ``zscore`` — the dataset statistics of the SEN12MS toolbox;
* ``fixed`` — S1 / 25 + 1, S2 / 10 000.

All ops take raw values (S1 in dB, S2 as reflectance x 10 000) shaped
``[..., H, W, C]`` — one sample or a batch — whose channels are the named
``bands`` in that order, and return float32. They contain no Python in the
per-example path, so they run inside ``tf.data`` as well as eagerly.

NaN is handled explicitly, never by accident:

* ``fill_nan=True`` (default): a NaN pixel is set to the lower clip bound
  before normalising (for S1: -25 dB, "no backscatter"), so the output is finite.
* ``fill_nan=False``: NaN pixels stay NaN in the output; every other pixel is
  normalised as if they were absent (the maxima ignore them). This is
  the research code's behaviour, where the training loop then skips the batch
  whose loss is non-finite.

Example:
>>> norm = Normalization("per_sample_max")
>>> x = norm(s1_patch, "s1")            # [H, W, 2] float32 in [0, 1]
>>> norm.describe("s1")["clip"]
[-25.0, 0.0]
"""

import numpy as np
import tensorflow as tf

from sslrs_tf.data.bands import resolve_bands

CLIP_RANGES = {"s1": (-25.0, 0.0), "s2": (0.0, 10000.0)}

# Published dataset statistics (SEN12MS toolbox, MoCo work): mean, std per band.
# S2 statistics exist only for the 10-band set; B01, B09, B10 have none.
ZSCORE_STATS = {
    "s1": {"VV": (-11.76858, 4.525339), "VH": (-18.294598, 4.3586307)},
    "s2": {
        "B02": (1226.4215, 741.6254),
        "B03": (1137.3799, 740.883),
        "B04": (1139.6792, 960.1045),
        "B05": (1350.9973, 946.76056),
        "B06": (1932.9058, 985.52747),
        "B07": (2211.1584, 1082.4341),
        "B08": (2154.9846, 1057.7628),
        "B8A": (2409.1128, 1136.1942),
        "B11": (2001.8622, 1132.7898),
        "B12": (1356.0801, 991.48016),
    },
}

METHODS = ("per_sample_max", "per_patch_max", "zscore", "fixed")

#: added to every channel's maximum by :func:`per_sample_max`, as the research code does
MAX_EPSILON = 1e-5


def clip(x, modality, fill_nan=True):
    """Clips raw values to the range of SPEC §3 (S1 [-25, 0] dB, S2 [0, 10 000]); float32 out."""
    low, high = CLIP_RANGES[modality]
    x = tf.convert_to_tensor(x)
    if x.dtype.is_integer:
        return tf.cast(_clip_integers(x, low, high), tf.float32)
    x = tf.cast(x, tf.float32)
    if fill_nan:
        x = tf.where(tf.math.is_nan(x), low, x)
    # clip_by_value keeps NaN as NaN; fill_nan=False relies on that.
    return tf.clip_by_value(x, low, high)


def _clip_integers(x, low, high):
    """Integer rasters (S2) hold no NaN and clip more cheaply in their own, narrower dtype; an unsigned one
    needs no lower bound at 0."""
    if x.dtype.is_unsigned and low <= 0:
        return tf.minimum(x, tf.cast(high, x.dtype))
    return tf.clip_by_value(x, tf.cast(low, x.dtype), tf.cast(high, x.dtype))


def raw_channel_max(x):
    """Per-channel maximum of raw values over the two spatial axes, ignoring NaN (``-inf`` if all NaN)."""
    x = tf.convert_to_tensor(x)
    if x.dtype.is_floating:
        x = tf.where(tf.math.is_nan(x), tf.cast(-np.inf, x.dtype), x)
    return tf.reduce_max(x, axis=[-3, -2])


#: pixels per row of :class:`_PixelRows`, the most that divide the pixel count being taken
_ROW_PIXELS = (64, 32, 16, 8, 4, 2, 1)


class _PixelRows:
    """A raster ``[..., H, W, C]`` viewed as ``[N, H * W / k, k * C]``: N samples, rows of k pixels.

    Why: the per-channel passes (maxima, scaling) over rasters with few channels (13 S2 bands,
    2 S1 bands) have an innermost dimension too short to vectorise well; rows of k pixels make it
    k * C long. ``bench/input_steps.py`` times XLA's per-sample-max of a batch of 32 S2 crops of
    128 px both ways (1.46x faster as rows of 64 pixels, ``[B, 256, 832]``, in its run in
    bench/README.md), with the same values: every element sees the same operations; only the
    layout of the loops changes.
    """

    def __init__(self, x):
        self.shape = tf.shape(x)
        self.channels = x.shape[-1]
        height, width = x.shape[-3], x.shape[-2]
        pixels = height * width if height is not None and width is not None else None
        if pixels is None:  # known only when it runs: one pixel a row
            self.k, rows = 1, tf.stack([-1, self.shape[-3] * self.shape[-2], self.channels])
        else:
            self.k = next(k for k in _ROW_PIXELS if pixels % k == 0)
            rows = [-1, pixels // self.k, self.k * self.channels]
        self.rows = tf.reshape(x, rows)

    def channel_max(self, rows=None):
        """``[N, C]``: each sample's per-channel maximum (of `rows`, default its own), ignoring NaN (``-inf`` if
        all NaN), as :func:`raw_channel_max`."""
        rows = self.rows if rows is None else rows
        if rows.dtype.is_floating:
            rows = tf.where(tf.math.is_nan(rows), tf.cast(-np.inf, rows.dtype), rows)
        return tf.reduce_max(tf.reshape(tf.reduce_max(rows, axis=1), [-1, self.k, self.channels]), axis=1)

    def times(self, rows, scale):
        """`rows` with each sample's channels multiplied by `scale` ``[N, C]``, back in the raster's shape."""
        return tf.reshape(rows * tf.tile(scale, [1, self.k])[:, None, :], self.shape)


def per_sample_max(x, modality, fill_nan=True):
    """The papers' normalisation: clip, shift to start at 0, divide each channel by its maximum + 1e-5.

    The maximum is that of `x` itself, per sample and channel (over the two spatial
    axes): `x` is the crop the model sees, as in the research code
    (HSG-AIML/SSLTransformerRS, ``dfc_dataset.py``), which reads a random crop window,
    clips (S1 to [-25, 0] then +25; S2 to [0, 10 000]) and divides every channel by
    that window's maximum plus 1e-5. In evaluation each centre crop or tile is its own
    sample. The code adds the 1e-5 to the S1 maxima as well as to the S2 maxima (SPEC
    §3 mentions S2 only); the code is followed here.

    A channel whose clipped values are all at the lower clip bound becomes 0
    (0 / 1e-5), not NaN. With ``fill_nan=False`` NaN pixels stay NaN and the maximum
    ignores them (an all-NaN channel has maximum 0).
    """
    low, high = CLIP_RANGES[modality]
    x = tf.convert_to_tensor(x)
    if x.dtype.is_integer:
        # The maximum is taken in the integer dtype: half the bytes of float32 to reduce over for uint16, and the
        # same value (the cast to float32 is exact and keeps the order).
        pixels = _PixelRows(_clip_integers(x, low, high))
        peak = tf.cast(pixels.channel_max(), tf.float32)
        rows = tf.cast(pixels.rows, tf.float32)
    else:
        pixels = _PixelRows(clip(x, modality, fill_nan))
        rows = pixels.rows
        peak = pixels.channel_max()
    if low:
        # max(x) - low is max(x - low): a float subtraction keeps the order.
        rows, peak = rows - low, peak - low
    peak = tf.maximum(peak, 0.0)  # -inf (all NaN) -> 0
    # One multiply per pixel; a NaN pixel (fill_nan=False) stays NaN whatever it is multiplied by.
    return pixels.times(rows, 1.0 / (peak + MAX_EPSILON))


def per_patch_max(x, modality, fill_nan=True, raw_max=None):
    """Clip, shift to start at 0, divide each channel by the maximum of the whole patch `x` was cropped from.

    Not the papers' preprocessing (that is :func:`per_sample_max`, on the crop): here a
    crop keeps the scale of its stored 256 px patch, and no epsilon is added. A channel
    whose maximum is 0 (every pixel at the lower clip bound) becomes 0 rather than NaN.

    Args:
        raw_max: per-channel maxima of the raw values (``[..., C]``, NaN ignored) of
            the whole patch `x` was cropped from (the builders store them as
            ``s1_max`` / ``s2_max``). Default: the maxima of `x` itself.
    """
    low, high = CLIP_RANGES[modality]
    pixels = _PixelRows(clip(x, modality, fill_nan))
    rows = pixels.rows - low if low else pixels.rows
    if raw_max is None:
        peak = tf.maximum(pixels.channel_max(rows), 0.0)  # -inf (all NaN) -> 0
    else:
        # Clipping is monotone: the maximum of the clipped values is the clipped maximum.
        peak = tf.clip_by_value(tf.reshape(tf.cast(raw_max, tf.float32), [-1, pixels.channels]), low, high) - low
    # One multiply per pixel: a zero peak gives a zero scale (0, not NaN), and a
    # NaN pixel (fill_nan=False) stays NaN whatever it is multiplied by.
    return pixels.times(rows, tf.math.divide_no_nan(1.0, peak))


def zscore_table(modality, bands, stats=None):
    """``{band: (mean, std)}`` for `bands`: the published statistics, overridden by `stats`.

    Raises:
        ValueError: a band has no statistics.
    """
    table = dict(ZSCORE_STATS[modality], **(stats or {}))
    missing = [b for b in bands if b not in table]
    if missing:
        raise ValueError(
            f"zscore normalisation has no statistics for {modality} band(s) {', '.join(missing)}; "
            f"published statistics exist for {', '.join(ZSCORE_STATS[modality])} (use band set 's2_10' or pass stats)"
        )
    return table


def zscore(x, modality, bands=None, fill_nan=True, stats=None):
    """Clip, then subtract the dataset mean and divide by the dataset std per band.

    Args:
        stats: optional ``{band: (mean, std)}`` overriding :data:`ZSCORE_STATS`
            (needed for bands without published statistics, e.g. S2 B01, B09, B10).
    """
    bands = resolve_bands(modality, bands)
    table = zscore_table(modality, bands, stats)
    mean = np.array([table[b][0] for b in bands], np.float32)
    std = np.array([table[b][1] for b in bands], np.float32)
    return (clip(x, modality, fill_nan) - mean) / std


def fixed(x, modality, fill_nan=True):
    """Fixed scaling to [0, 1] after clipping: S1 / 25 + 1, S2 / 10 000."""
    x = clip(x, modality, fill_nan)
    return x / 25.0 + 1.0 if modality == "s1" else x / 10000.0


class Normalization:
    """One named normalisation choice, as configs, pipelines and exported weights carry it.

    Args:
        method: one of ``"per_sample_max"``, ``"per_patch_max"``, ``"zscore"``, ``"fixed"``
            (see the module docstring).
        fill_nan: replace NaN by the lower clip bound (``True``) or keep it (``False``).
        stats: ``{"s1"|"s2": {band: (mean, std)}}`` extra z-score statistics.

    Example:
    >>> norm = Normalization("zscore")
    >>> x = norm(s2_patch, "s2", bands="s2_10")
    """

    def __init__(self, method="per_sample_max", fill_nan=True, stats=None):
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {list(METHODS)}. Received: method={method!r}")
        self.method = method
        self.fill_nan = bool(fill_nan)
        self.stats = {m: {b: tuple(v) for b, v in s.items()} for m, s in (stats or {}).items()}

    def __call__(self, x, modality, bands=None, raw_max=None):
        """Normalises raw `x` of `modality` whose channels are `bands` (default: all bands).

        `raw_max` (``per_patch_max`` only): per-channel raw maxima of the whole patch `x` was
        cropped from (see :func:`per_patch_max`). ``per_sample_max`` divides by the maxima of
        `x` and refuses it; ``zscore`` and ``fixed`` work per pixel and ignore it.
        """
        if self.method == "per_sample_max":
            if raw_max is not None:
                raise ValueError("per_sample_max divides by the maxima of the array it is given; "
                                 "raw_max (whole-patch maxima) belongs to per_patch_max")
            return per_sample_max(x, modality, self.fill_nan)
        if self.method == "per_patch_max":
            return per_patch_max(x, modality, self.fill_nan, raw_max)
        if self.method == "fixed":
            return fixed(x, modality, self.fill_nan)
        return zscore(x, modality, bands, self.fill_nan, self.stats.get(modality))

    def get_config(self):
        """Constructor arguments, for configs and round trips."""
        stats = {m: {b: list(v) for b, v in s.items()} for m, s in self.stats.items()}
        return {"method": self.method, "fill_nan": self.fill_nan, "stats": stats}

    @classmethod
    def from_config(cls, config):
        """Builds a :class:`Normalization` from a name or a :meth:`get_config` dictionary."""
        if isinstance(config, str):
            return cls(config)
        return cls(**config)

    def describe(self, modality, bands=None):
        """Everything a user of a weight needs to reproduce its input: bands, clip range, method, statistics."""
        bands = resolve_bands(modality, bands)
        out = {"bands": list(bands), "clip": list(CLIP_RANGES[modality]), **self.get_config()}
        out.pop("stats")
        if self.method == "zscore":
            table = zscore_table(modality, bands, self.stats.get(modality))
            out["mean"] = [table[b][0] for b in bands]
            out["std"] = [table[b][1] for b in bands]
        return out

    def __eq__(self, other):
        return isinstance(other, Normalization) and self.get_config() == other.get_config()

    def __repr__(self):
        return f"Normalization(method={self.method!r}, fill_nan={self.fill_nan})"
