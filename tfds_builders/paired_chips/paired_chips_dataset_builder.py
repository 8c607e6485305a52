"""Your own co-registered Sentinel-1/2 chips as a TFDS dataset (sslrs_tf.data.chips reads them)."""

import json

import numpy as np
import tensorflow_datasets as tfds

from sslrs_tf.data import chips
from sslrs_tf.data.bands import resolve_bands
from sslrs_tf.data.tfds_common import ON_ERROR, SentinelBuilder, raster_feature, unit_hash
from sslrs_tf.errors import UserError

_LAYOUT = "manifest.csv (columns s1, s2[, id, label | mask, split]) or {id}_s1.tif / {id}_s2.tif pairs"


class PairedChipsConfig(tfds.core.BuilderConfig):
    """How a folder of chips becomes a dataset: what changes the stored records.

    Args:
        classes: the class names of the labels: a list (a mask's code i is class i; a manifest's
            ``label`` column names them) or a mapping ``{code: name}`` for masks whose codes are not
            0..n-1. None: an unlabelled dataset (pre-training); a manifest's label or mask column
            is then refused.
        patch_size: chip height and width in pixels (every chip; crops are cut at training time).
        s2_bands: the S2 bands to store, by name (``B01`` .. ``B12``, ``B8A``; a set name such as
            ``s2_10``), picked from each file by its band descriptions; a file without
            descriptions must hold exactly these bands in this order. Default: all 13.
        s1_units: ``db`` (as SEN12MS) or ``linear`` (power; stored as dB).
        s2_scale: float S2 files only: the factor to reflectance x 10 000 (10000 for reflectance in 0..1).
        on_misaligned: ``error`` (a pair not on one grid stops the build, naming both files) or
            ``resample`` (S1 warped onto the S2 grid, bilinearly in linear power; a mask by nearest).
        max_nodata: largest share of a chip's pixels that may be nodata (S1 NaN or nodata value, S2
            nodata value); a chip with more is skipped and counted. The nodata pixels of a chip kept
            are NaN in S1 (filled by the normalisation), 0 in S2 and ignored (255) in its mask.
        test_fraction: share of chips without a manifest ``split`` put in ``test`` (a stable hash of the id).
        manifest: the manifest's file name in the manual folder (absent: the folder pattern).
        on_error: ``raise`` stops at a file that cannot be used as it is; ``skip`` skips and counts it.

    Example:
    >>> # python -m sslrs_tf.datasets paired_chips --manual_dir chips/ --data_dir data/tfds \\
    >>> #     --config '{"name": "floods", "classes": ["dry", "water"], "patch_size": 512}'
    """

    def __init__(self, *, classes=None, patch_size=256, s2_bands=None, s1_units="db", s2_scale=None,
                 on_misaligned="error", max_nodata=0.0, test_fraction=0.1, manifest=chips.MANIFEST,
                 on_error="raise", **kwargs):
        kwargs.setdefault("version", "1.0.0")
        super().__init__(**kwargs)
        self.classes, self.patch_size, self.s2_bands = classes, patch_size, s2_bands
        self.s1_units, self.s2_scale, self.on_misaligned = s1_units, s2_scale, on_misaligned
        self.max_nodata, self.test_fraction, self.manifest, self.on_error = max_nodata, test_fraction, manifest, on_error
        if not isinstance(patch_size, int) or patch_size < 1:
            raise UserError(f"config patch_size must be a positive integer. Received: patch_size={patch_size!r}")
        choices = {"s1_units": chips.S1_UNITS, "on_misaligned": chips.ON_MISALIGNED, "on_error": ON_ERROR}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise UserError(f"config {key} must be one of {list(allowed)}. Received: {key}={getattr(self, key)!r}")
        for key in ("max_nodata", "test_fraction"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1 + (key == "max_nodata"):
                raise UserError(f"config {key} must be a number in [0, 1{']' if key == 'max_nodata' else ')'}. "
                                f"Received: {key}={value!r}")
        if s2_scale is not None and (isinstance(s2_scale, bool) or not isinstance(s2_scale, (int, float)) or s2_scale <= 0):
            raise UserError(f"config s2_scale must be a positive number or null. Received: s2_scale={s2_scale!r}")
        try:
            self.bands = resolve_bands("s2", s2_bands)
        except ValueError as err:
            raise UserError(f"config s2_bands: {err}") from None
        self.codes, self.class_names = chips.class_codes(classes) if classes is not None else ({}, ())
        #: the arguments that shape the records, as stored in the dataset's metadata (JSON types): a later
        #: build under the same name with others is refused (sslrs_tf.datasets.build)
        self.arguments = json.loads(json.dumps(dict(
            classes=classes, patch_size=patch_size, s2_bands=list(self.bands), s1_units=s1_units, s2_scale=s2_scale,
            on_misaligned=on_misaligned, max_nodata=max_nodata, test_fraction=test_fraction, manifest=manifest,
            on_error=on_error)))

    def settings(self, task):
        """The :class:`~sslrs_tf.data.chips.ChipSettings` of this config for `task`."""
        return chips.ChipSettings(
            patch_size=self.patch_size, s2_bands=self.bands, named_bands=self.s2_bands is not None,
            s1_units=self.s1_units, s2_scale=self.s2_scale, on_misaligned=self.on_misaligned,
            on_error=self.on_error, max_nodata=self.max_nodata, task=task, classes=self.class_names,
            codes=self.codes)


class Builder(SentinelBuilder):
    """Co-registered Sentinel-1/Sentinel-2 chips of your own, with class labels, masks or none.

    Splits: those a manifest's ``split`` column names, else ``train`` and ``test``
    (``test_fraction`` of the chips, by a stable hash of the id).
    Features: ``s1`` float32 dB [P, P, 2], ``s2`` uint16 [P, P, bands] (``s2_bands``),
    ``s1_max``, ``s2_max``, ``id`` and, when the config lists ``classes``, ``mask`` uint8
    [P, P] (class indices, 255 ignored; a classification chip's class everywhere) and
    ``label`` (a classification chip's class, -1 for a segmentation chip).
    The dataset's metadata names the classes, the task and the S2 bands.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "S1 (dB) and S2 chips from a manifest or the {id}_s1/_s2 pattern; classes from the config."}
    BUILDER_CONFIGS = [PairedChipsConfig(name="default", description="Unlabelled 256 px chips with 13 S2 bands.")]
    DEFAULT_CONFIG_NAME = "default"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Put your chips in one folder, the manual_dir: either with a manifest.csv, one row per
    location (columns s1, s2: paths relative to the folder; optional id, label or mask, split),
    or as {id}_s1.tif / {id}_s2.tif pairs (a {id}_mask.tif beside them is the mask). Then run
    `python -m sslrs_tf.datasets paired_chips --manual_dir DIR --data_dir OUT --config '{"name": ...}'`
    (docs/own_data.md).
    """

    def _info(self):
        config = self.builder_config
        size = config.patch_size
        features = {
            "s1": raster_feature("s1", size),
            "s2": tfds.features.Tensor(shape=(size, size, len(config.bands)), dtype=np.uint16,
                                       encoding=tfds.features.Encoding.BYTES,
                                       doc=f"s2: raw uint16, bands {', '.join(config.bands)}"),
            "s1_max": tfds.features.Tensor(shape=(2,), dtype=np.float32, doc="per-channel maximum of the raw s1"),
            "s2_max": tfds.features.Tensor(shape=(len(config.bands),), dtype=np.uint16,
                                           doc="per-channel maximum of the raw s2"),
            "id": tfds.features.Text(),
        }
        if config.class_names:
            features["mask"] = tfds.features.Tensor(shape=(size, size), dtype=np.uint8,
                                                    encoding=tfds.features.Encoding.BYTES,
                                                    doc=f"class indices of {', '.join(config.class_names)}; 255 ignored")
            features["label"] = tfds.features.Scalar(np.int64, doc="class index of a classification chip, else -1")
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features),
                                              metadata=tfds.core.MetadataDict())

    def _split_generators(self, dl_manager):
        config = self.builder_config
        root = self._manual_root(dl_manager, _LAYOUT)
        manifest = root / config.manifest
        listed = chips.read_manifest(root, config.manifest) if manifest.exists() else chips.find_chips(root)
        if not listed:
            raise UserError(f"manual_dir {root} has no {config.manifest} and no *_s2.tif file; expected {_LAYOUT}")
        task = self._task(listed, manifest)
        by_split = {}
        for chip in listed:
            by_split.setdefault(chips.split_of(chip, config.test_fraction), []).append(chip)
        complete = [c for c in listed if c.s1.exists() and c.s2.exists()]
        if "test" not in by_split and config.test_fraction > 0 and not any(c.split for c in listed) and len(complete) > 1:
            # A few chips must still give a test split: the chip with both files ranked first by the hash.
            first = min(complete, key=lambda c: unit_hash("test", c.id))
            by_split = {"train": [c for c in listed if c is not first], "test": [first]}
        self._settings = config.settings(task)
        self.info.metadata.update({"classes": list(config.class_names), "task": task, "s2_bands": list(config.bands),
                                   "s1_units_on_disk": config.s1_units, "config": config.arguments})
        return {split: self._generate_examples(found, split) for split, found in sorted(by_split.items())}

    def _generate_examples(self, found, split):
        return self._examples([(c.id, c) for c in found], split)

    def _task(self, listed, manifest):
        """None, "classification" or "segmentation", from what the chips carry, checked against the config."""
        config = self.builder_config
        labelled = [c for c in listed if c.label is not None]
        masked = [c for c in listed if c.mask is not None]
        if not config.class_names:
            if labelled or masked:
                what = "a label column" if labelled else "masks"
                raise UserError(f"{manifest if labelled else masked[0].mask}: the chips have {what} but the config lists "
                                "no classes; set classes (e.g. [water, land]) or leave the labels out")
            return None
        if labelled:
            unknown = next((c for c in labelled if c.label not in config.class_names), None)
            if unknown:
                raise UserError(f"{unknown.where}: label {unknown.label!r} is not one of the config's classes "
                                f"{list(config.class_names)}")
            return "classification"
        if not masked:
            raise UserError(f"the config lists classes but no chip has a label or a mask ({_LAYOUT})")
        return "segmentation"

    def _loader(self):
        return chips.load_chip_example, (self._settings,)
