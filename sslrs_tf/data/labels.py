"""Land-cover label tables and target derivation (SPEC §2), as TF ops.

Chain of labels: SEN12MS ``lc`` band 1 holds IGBP classes (1-17); DFC2020 ``dfc``
holds DFC-10 classes (1-10, 0 = no data). Both are brought to the 8 classes of
the papers, where Savanna, Snow/Ice and no-data become :data:`IGNORE` (255).

Targets from an 8-class mask (one sample ``[H, W]`` or a batch ``[B, H, W]``):

* :func:`single_label` — the most frequent valid class; 255 never wins the vote
  (the research code lets it, then averages over a phantom "class_255"). A
  mask without any valid pixel gives -1, and pipelines drop such samples.
* :func:`multi_label` — every class covering at least 10 % of the pixels.
* the segmentation target is the 8-class mask itself, 255 ignored by losses and metrics.

Other label schemes (:data:`SCHEMES`, ``data.label_scheme``) replace the 8 classes: the
SEN12MS scene-classification schemes ``igbp`` (the 17 IGBP classes, from ``lc``) and
``igbp_simple`` (the 10 classes of the simplified IGBP scheme, which are DFC-10's: from
``lc`` through :data:`IGBP_TO_DFC10`, or from ``dfc`` as stored). No data (0) is ignored.
"""

import numpy as np
import tensorflow as tf

IGNORE = 255
NUM_CLASSES = 8
CLASS_NAMES = ("Forest", "Shrubland", "Grassland", "Wetlands", "Croplands", "Urban", "Barren", "Water")
DFC10_NAMES = (
    "no data", "Forest", "Shrubland", "Savanna", "Grassland", "Wetlands",
    "Croplands", "Urban/Built-up", "Snow/Ice", "Barren", "Water",
)

# IGBP (0..17) -> DFC-10, by index.
IGBP_TO_DFC10 = np.array([0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10], np.uint8)
# DFC-10 (0..10) -> 8 classes; no data, Savanna and Snow/Ice -> IGNORE.
DFC10_TO_CLASSES = np.array([IGNORE, 0, 1, IGNORE, 2, 3, 4, 5, IGNORE, 6, 7], np.uint8)


IGBP_NAMES = (
    "Evergreen Needleleaf Forests", "Evergreen Broadleaf Forests", "Deciduous Needleleaf Forests",
    "Deciduous Broadleaf Forests", "Mixed Forests", "Closed Shrublands", "Open Shrublands", "Woody Savannas",
    "Savannas", "Grasslands", "Permanent Wetlands", "Croplands", "Urban and Built-up Lands",
    "Cropland/Natural Vegetation Mosaics", "Permanent Snow and Ice", "Barren", "Water Bodies",
)
# IGBP (0..17) -> the 17 classes 0..16; DFC-10 (0..10) -> the simplified scheme's 10 classes 0..9. 0 = no data.
IGBP_TO_IGBP17 = np.array([IGNORE, *range(17)], np.uint8)
DFC10_TO_SIMPLE = np.array([IGNORE, *range(10)], np.uint8)

#: ``data.label_scheme`` of SEN12MS and DFC2020: its class names, in code order
SCHEMES = {"dfc8": CLASS_NAMES, "igbp": IGBP_NAMES, "igbp_simple": DFC10_NAMES[1:]}
#: the label rasters each scheme can be derived from
SCHEME_SOURCES = {"dfc8": ("dfc", "lc"), "igbp": ("lc",), "igbp_simple": ("dfc", "lc")}


def _lookup(mask, table, default):
    # A full 0..255 table keeps the op a single gather; values outside the
    # table's domain (e.g. a 255 fill value) map to `default` instead of failing.
    full = np.full(256, default, np.uint8)
    full[: len(table)] = table
    index = tf.cast(tf.clip_by_value(tf.cast(mask, tf.int32), 0, 255), tf.int32)
    out_of_range = tf.cast(mask, tf.int32) > 255
    return tf.where(out_of_range, tf.constant(default, tf.uint8), tf.gather(full, index))


def igbp_to_dfc10(mask):
    """Maps IGBP classes (SEN12MS lc band 1) to DFC-10; unknown values become 0 (no data)."""
    return _lookup(mask, IGBP_TO_DFC10, 0)


def dfc10_to_classes(mask):
    """Maps DFC-10 classes to the 8 classes of the papers; ignored and unknown values become 255."""
    return _lookup(mask, DFC10_TO_CLASSES, IGNORE)


def igbp_to_classes(mask):
    """IGBP -> DFC-10 -> 8 classes in one step."""
    return dfc10_to_classes(igbp_to_dfc10(mask))


def to_scheme(mask, label_source, scheme="dfc8"):
    """A label raster's codes (``label_source`` ``"dfc"``: DFC-10; ``"lc"``: IGBP band 1) as the classes of
    `scheme` (:data:`SCHEMES`), :data:`IGNORE` where a code has no class there."""
    if label_source not in SCHEME_SOURCES.get(scheme, ()):
        raise ValueError(f"label scheme {scheme!r} cannot be derived from {label_source!r} labels "
                         f"(it needs {' or '.join(SCHEME_SOURCES.get(scheme, ('a known scheme',)))})")
    if scheme == "dfc8":
        return dfc10_to_classes(mask) if label_source == "dfc" else igbp_to_classes(mask)
    if scheme == "igbp":
        return _lookup(mask, IGBP_TO_IGBP17, IGNORE)
    return _lookup(mask if label_source == "dfc" else igbp_to_dfc10(mask), DFC10_TO_SIMPLE, IGNORE)


def class_histogram(mask, num_classes=NUM_CLASSES):
    """Pixel count per class over the last two axes; ignored pixels are not counted."""
    # one_hot of 255 is all zeros, so ignored pixels drop out without a mask.
    onehot = tf.one_hot(tf.cast(mask, tf.int32), num_classes, dtype=tf.int32)
    return tf.reduce_sum(onehot, axis=[-3, -2])


def single_label(mask, num_classes=NUM_CLASSES):
    """Most frequent valid class of each mask (lowest index on ties); -1 where no pixel is valid."""
    hist = class_histogram(mask, num_classes)
    label = tf.argmax(hist, axis=-1, output_type=tf.int32)
    return tf.where(tf.reduce_sum(hist, axis=-1) > 0, label, -1)


def multi_label(mask, num_classes=NUM_CLASSES, threshold=0.1):
    """Multi-hot float32 vector: 1 for every class covering at least `threshold` of all pixels of the mask."""
    hist = tf.cast(class_histogram(mask, num_classes), tf.float32)
    pixels = tf.cast(tf.shape(mask)[-1] * tf.shape(mask)[-2], tf.float32)
    return tf.cast(hist >= threshold * pixels, tf.float32)
