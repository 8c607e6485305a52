"""SSL4EO-S12 as a TFDS dataset, read with rasterio from the extracted archives (sslrs_tf.data.ssl4eo)."""

import numpy as np
import tensorflow_datasets as tfds

from sslrs_tf.data import ssl4eo
from sslrs_tf.data.tfds_common import ON_ERROR, SentinelBuilder, held_out
from sslrs_tf.errors import UserError

_LAYOUT = "s1/<location>/<season>/VV.tif, VH.tif and s2c/ (or s2a/)<location>/<season>/B1.tif ... B12.tif"


class Ssl4eoS12Config(tfds.core.BuilderConfig):
    """Which SSL4EO-S12 products are stored.

    Args:
        level: the S2 product: ``l1c`` (top of atmosphere, 13 bands, folder ``s2c``) or ``l2a``
            (surface reflectance, 12 bands without B10, folder ``s2a``).
        seasons: seasons per location (the first ones in date order; 4 in the dataset).
        patch_size: the 10 m grid in pixels (264 in the dataset); coarser bands are repeated onto it.
        holdout_fraction: share of locations put in the ``holdout`` split, by a stable hash of the location.
        on_error: ``raise`` stops at a broken file; ``skip`` skips and counts its location.

    Example:
    >>> # python -m sslrs_tf.datasets ssl4eo_s12 --manual_dir /data/SSL4EO-S12 --data_dir data/tfds --config l2a
    """

    def __init__(self, *, level="l1c", seasons=ssl4eo.SEASONS, patch_size=264, holdout_fraction=0.01,
                 on_error="raise", **kwargs):
        kwargs.setdefault("version", "1.0.0")
        super().__init__(**kwargs)
        self.level, self.seasons, self.patch_size = level, seasons, patch_size
        self.holdout_fraction, self.on_error = holdout_fraction, on_error
        if level not in ssl4eo.LEVELS:
            raise UserError(f"config level must be one of {list(ssl4eo.LEVELS)}. Received: level={level!r}")
        if on_error not in ON_ERROR:
            raise UserError(f"config on_error must be one of {list(ON_ERROR)}. Received: on_error={on_error!r}")
        if not isinstance(seasons, int) or not 1 <= seasons <= ssl4eo.SEASONS:
            raise UserError(f"config seasons must be an integer in 1..{ssl4eo.SEASONS}. Received: seasons={seasons!r}")
        if not isinstance(patch_size, int) or patch_size < 6 or patch_size % 6:
            raise UserError(f"config patch_size must be a positive multiple of 6 (the 60 m bands are patch_size / 6 "
                            f"px). Received: patch_size={patch_size!r}")
        if isinstance(holdout_fraction, bool) or not isinstance(holdout_fraction, (int, float)) \
                or not 0 <= holdout_fraction < 1:
            raise UserError(f"config holdout_fraction must be a number in [0, 1). Received: "
                            f"holdout_fraction={holdout_fraction!r}")
        #: the arguments that shape the records, as stored in the dataset's metadata (sslrs_tf.datasets.build)
        self.arguments = dict(level=level, seasons=seasons, patch_size=patch_size, holdout_fraction=holdout_fraction,
                              on_error=on_error)


class Builder(SentinelBuilder):
    """SSL4EO-S12 (Wang et al. 2022): S1 GRD and S2 L1C or L2A of 251 079 locations, four seasons each.

    An example is one location: ``s1`` float32 dB [seasons, P, P, 2], ``s2`` uint16 [seasons, P, P,
    bands], their per-season channel maxima ``s1_max``, ``s2_max``, the acquisition dates
    ``s1_dates``, ``s2_dates`` (``YYYYMMDD``) and ``id`` (the location's folder). Splits: ``train``
    and ``holdout`` (locations, by a stable hash). The input pipeline takes one season's S1/S2 pair
    per sample (``sslrs_tf.data.sources.SeasonalSource``).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "One location's seasons per example; coarser bands repeated onto the 10 m grid."}
    BUILDER_CONFIGS = [Ssl4eoS12Config(name="l1c", description="S1 GRD and S2 L1C (13 bands)."),
                       Ssl4eoS12Config(name="l2a", level="l2a", description="S1 GRD and S2 L2A (12 bands).")]
    DEFAULT_CONFIG_NAME = "l1c"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download SSL4EO-S12 from mediaTUM record 1660427 (https://mediatum.ub.tum.de/1660427): the
    archives s1.tar.gz and s2_l1c.tar.gz (or s2_l2a.tar.gz), about 500 GB each. Extract them into
    one folder, the manual_dir, so that it holds s1/0000000/<season>/VV.tif and
    s2c/0000000/<season>/B1.tif (s2a/ for L2A), then run
    `python -m sslrs_tf.datasets ssl4eo_s12 --manual_dir DIR --data_dir OUT --config l1c`.
    """

    def _info(self):
        config = self.builder_config
        t, p, bands = config.seasons, config.patch_size, ssl4eo.LEVELS[config.level][1]
        bytes_ = tfds.features.Encoding.BYTES
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "s1": tfds.features.Tensor(shape=(t, p, p, 2), dtype=np.float32, encoding=bytes_,
                                           doc="s1: raw float32 dB per season, bands VV, VH"),
                "s2": tfds.features.Tensor(shape=(t, p, p, len(bands)), dtype=np.uint16, encoding=bytes_,
                                           doc=f"s2: raw uint16 per season, bands {', '.join(bands)}"),
                "s1_max": tfds.features.Tensor(shape=(t, 2), dtype=np.float32),
                "s2_max": tfds.features.Tensor(shape=(t, len(bands)), dtype=np.uint16),
                "s1_dates": tfds.features.Sequence(tfds.features.Text(), length=t),
                "s2_dates": tfds.features.Sequence(tfds.features.Text(), length=t),
                "id": tfds.features.Text(),
            }),
            metadata=tfds.core.MetadataDict(),
            homepage="https://github.com/zhu-xlab/SSL4EO-S12",
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        root = self._manual_root(dl_manager, _LAYOUT)
        s2_folder = ssl4eo.LEVELS[config.level][0]
        for folder in ("s1", s2_folder):
            if not (root / folder).is_dir():
                present = sorted(p.name for p in root.iterdir())[:4]
                raise UserError(f"manual_dir {root} has no folder {folder} (level {config.level}); it holds "
                                f"{present or 'nothing'}; expected {_LAYOUT}")
        locations = sorted({p.name for folder in ("s1", s2_folder) for p in (root / folder).iterdir() if p.is_dir()})
        if not locations:
            raise UserError(f"{root / s2_folder} has no location folder; expected {_LAYOUT}")
        holdout = set(held_out(locations, config.holdout_fraction))
        self.info.metadata.update({"s2_bands": list(ssl4eo.LEVELS[config.level][1]), "level": config.level,
                                   "seasons": config.seasons, "config": config.arguments})
        splits = {"train": [loc for loc in locations if loc not in holdout]}
        if holdout:
            splits["holdout"] = sorted(holdout)
        return {split: self._generate_examples(root, found, split) for split, found in splits.items()}

    def _generate_examples(self, root, locations, split):
        s2_folder = ssl4eo.LEVELS[self.builder_config.level][0]
        return self._examples([(loc, root / "s1" / loc, root / s2_folder / loc) for loc in locations], split)

    def _loader(self):
        config = self.builder_config
        return ssl4eo.load_location, (config.patch_size, config.level, config.seasons, config.on_error)
