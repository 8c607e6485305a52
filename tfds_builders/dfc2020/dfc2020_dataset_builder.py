"""DFC2020 as a TFDS dataset, read with rasterio from the extracted archives."""

import numpy as np
import tensorflow_datasets as tfds

from sslrs_tf.data import layout
from sslrs_tf.data.tfds_common import SentinelBuilder, raster_features
from sslrs_tf.errors import UserError

_LAYOUT = (
    "ROIs0000_validation/{s1,s2,lc,dfc}_validation (or _0)/ROIs0000_validation_<sensor>_0_p<id>.tif "
    "and ROIs0000_test/{s1,s2,lc,dfc}_0/ROIs0000_test_<sensor>_0_p<id>.tif"
)


class Dfc2020Config(tfds.core.BuilderConfig):
    """How to build DFC2020.

    Args:
        patch_size: patch size in pixels (256 for the real data).
        on_error: ``"raise"`` stops the build at a broken file; ``"skip"`` skips and counts it.
    """

    def __init__(self, *, patch_size=256, on_error="raise", **kwargs):
        kwargs.setdefault("version", "1.0.0")
        super().__init__(**kwargs)
        self.patch_size = patch_size
        self.on_error = on_error


class Builder(SentinelBuilder):
    """DFC2020: 986 validation and 5 128 test patches of Sentinel-1/2 with a DFC-10 label mask, 256 x 256 px.

    The papers fine-tune on ``validation`` and test on ``test``. Features:
    ``s1`` float32 dB [H, W, 2], ``s2`` uint16 [H, W, 13], ``lc`` uint8 [H, W, 4],
    ``dfc`` uint8 [H, W] (DFC-10 classes 1-10, 0 = no data), ``s1_max``, ``s2_max``
    (per-channel maxima of the raw patch), ``patch``, ``id``.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Raw s1/s2/lc/dfc as bytes-encoded tensors; both validation folder namings."}
    BUILDER_CONFIGS = [Dfc2020Config(name="default", description="Both splits, 256 px.")]
    DEFAULT_CONFIG_NAME = "default"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download DFC2020 (IEEE GRSS Data Fusion Contest 2020, e.g. from IEEE DataPort
    "2020 IEEE GRSS Data Fusion Contest" or the SEN12MS-based release on
    mediaTUM), including the test labels (folder `dfc_0`). Extract so that the
    manual_dir holds

        ROIs0000_validation/s1_validation/ROIs0000_validation_s1_0_p0.tif  (also s2_, lc_, dfc_; 986 patches)
        ROIs0000_test/s1_0/ROIs0000_test_s1_0_p0.tif                       (also s2_, lc_, dfc_; 5 128 patches)

    The validation folders may also be named `s1_0` ... `dfc_0`, as the
    research code expects; both namings work. Then run
    `tfds build tfds_builders/dfc2020 --manual_dir DIR --data_dir OUT`.
    """

    def _info(self):
        size = self.builder_config.patch_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                **raster_features(layout.DFC2020_KINDS, size),
                "patch": tfds.features.Scalar(np.int32),
                "id": tfds.features.Text(),
            }),
            metadata=tfds.core.MetadataDict(),
            homepage="https://ieee-dataport.org/competitions/2020-ieee-grss-data-fusion-contest",
        )

    def _split_generators(self, dl_manager):
        root = self._manual_root(dl_manager, _LAYOUT)
        splits = {}
        for split, (roi, suffixes) in layout.DFC2020_SPLITS.items():
            if not (root / roi).is_dir():
                raise UserError(f"manual_dir {root} has no folder {roi} (DFC2020 {split} split); expected {_LAYOUT}")
            folders = {}
            for kind in layout.DFC2020_KINDS:
                found = [root / roi / f"{kind}_{s}" for s in suffixes if (root / roi / f"{kind}_{s}").is_dir()]
                if not found:
                    names = " or ".join(f"{roi}/{kind}_{s}" for s in suffixes)
                    what = " (the labels)" if kind == "dfc" else ""
                    raise UserError(f"manual_dir {root} has no folder {names}{what}; expected {_LAYOUT}")
                folders[kind] = found[0]
            splits[split] = self._generate_examples(folders, roi, split)
        return splits

    def _generate_examples(self, folders, roi, split):
        patches = set()
        for folder in folders.values():
            patches.update(p for p in map(layout.patch_id, (f.name for f in folder.iterdir())) if p is not None)
        items = []
        for patch in sorted(patches):
            paths = {kind: folder / f"{roi}_{kind}_0_p{patch}.tif" for kind, folder in folders.items()}
            items.append((f"{split}_p{patch}", paths, dict(patch=patch, id=f"{split}_p{patch}")))
        return self._examples(items, split)
