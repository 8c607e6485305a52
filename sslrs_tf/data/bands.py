"""Band names, their order on disk, and named band subsets.

The order of each tuple is the order of the bands in the files (rasterio band
index - 1) and therefore in the stored TFDS tensors. Everything downstream
selects bands by *name*, never by position, so a weight trained on a subset can
say exactly which bands it expects.
"""

S1_BANDS = ("VV", "VH")
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
LC_BANDS = ("IGBP", "LCCS_LC", "LCCS_LU", "LCCS_SH")

MODALITY_BANDS = {"s1": S1_BANDS, "s2": S2_BANDS}

# Named subsets. Keys are what configs write instead of a list of bands.
BAND_SETS = {
    "s1": S1_BANDS,
    "s2": S2_BANDS,
    "all": S2_BANDS,
    "rgb": ("B04", "B03", "B02"),
    # The 10 bands of the SEN12MS MoCo work (the 60 m atmospheric bands dropped).
    "s2_10": ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"),
}


def resolve_bands(modality, bands=None):
    """Returns the tuple of band names that `bands` stands for in `modality`.

    Args:
        modality: ``"s1"`` or ``"s2"``.
        bands: ``None`` (all bands of the modality), the name of a set in
            :data:`BAND_SETS`, or a sequence of band names.

    Example:
    >>> resolve_bands("s2", "rgb")
    ('B04', 'B03', 'B02')
    """
    if modality not in MODALITY_BANDS:
        raise ValueError(f"`modality` must be one of {sorted(MODALITY_BANDS)}. Received: modality={modality!r}")
    available = MODALITY_BANDS[modality]
    if bands is None:
        return available
    if isinstance(bands, str):
        if bands not in BAND_SETS:
            raise ValueError(
                f"unknown band set {bands!r} for {modality}; expected one of {sorted(BAND_SETS)} or a list of band names"
            )
        bands = BAND_SETS[bands]
    bands = tuple(bands)
    unknown = [b for b in bands if b not in available]
    if unknown:
        raise ValueError(f"{modality} has no band {unknown[0]!r}; its bands are {', '.join(available)}")
    if len(set(bands)) != len(bands):
        raise ValueError(f"bands must not repeat. Received: bands={list(bands)}")
    return bands


def band_indices(modality, bands=None):
    """Positions of `bands` (see :func:`resolve_bands`) in the stored channel axis of `modality`."""
    available = MODALITY_BANDS[modality]
    return [available.index(b) for b in resolve_bands(modality, bands)]
