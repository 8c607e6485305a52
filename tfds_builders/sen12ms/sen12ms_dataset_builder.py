"""SEN12MS as a TFDS dataset, read with rasterio from the extracted archives."""

import collections
import math

import numpy as np
import rasterio
import tensorflow_datasets as tfds

from sslrs_tf.data import layout
from sslrs_tf.data.tfds_common import SentinelBuilder, held_out, raster_features, unit_hash
from sslrs_tf.errors import UserError

_LAYOUT = "ROIs1158_spring/s1_<scene>/ROIs1158_spring_s1_<scene>_p<patch>.tif (and s2_, lc_; one folder per season)"


class Sen12msConfig(tfds.core.BuilderConfig):
    """Which part of SEN12MS to build, and how.

    Args:
        seasons: seasons to include (``spring``, ``summer``, ``fall``, ``winter``).
        scene_fraction: fraction of each season's scenes to include, chosen by a
            stable hash of (season, scene): a 10 % build is a subset of a 20 % build.
        holdout_fraction: fraction of scenes put in the ``holdout`` split; no scene
            is in both splits. Chosen by a stable hash, so a scene's split does not
            depend on which other scenes are built.
        patch_size: patch size in pixels (256 for the real data).
        on_error: ``"raise"`` stops the build at a broken file; ``"skip"`` skips and counts it.
        non_overlapping: keep only patches whose footprints overlap no patch kept before them
            (:func:`non_overlapping`; the MoCo work's pre-training subset).
        labels: store the ``lc`` rasters (``False``: S1 and S2 only, for pre-training, which never reads
            them: a 256 px record is then 2.23 MB instead of 2.49 MB, and the pipeline reads that much less
            per sample; the lc files need not exist).

    Example:
    >>> # one flag on the command line:
    >>> # tfds build tfds_builders/sen12ms --config '{"name": "spring_10", "seasons": ["spring"], "scene_fraction": 0.1}'
    """

    def __init__(self, *, seasons=layout.SEASONS, scene_fraction=1.0, holdout_fraction=0.1,
                 patch_size=256, on_error="raise", non_overlapping=False, labels=True, **kwargs):
        kwargs.setdefault("version", "1.0.0")
        super().__init__(**kwargs)
        self.seasons = tuple(seasons)
        self.scene_fraction = scene_fraction
        self.holdout_fraction = holdout_fraction
        self.patch_size = patch_size
        self.on_error = on_error
        self.non_overlapping = non_overlapping
        self.labels = labels
        for key in ("non_overlapping", "labels"):
            if not isinstance(getattr(self, key), bool):
                raise UserError(f"config {key} must be true or false. Received: {key}={getattr(self, key)!r}")
        unknown = [s for s in self.seasons if s not in layout.SEASONS]
        if unknown or not self.seasons:
            raise UserError(f"config seasons must be a non-empty list of {list(layout.SEASONS)}. Received: seasons={list(self.seasons)}")
        for key in ("scene_fraction", "holdout_fraction"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1 or (key == "scene_fraction" and value == 0):
                raise UserError(f"config {key} must be a number in {'(0, 1]' if key == 'scene_fraction' else '[0, 1]'}. Received: {key}={value!r}")


def non_overlapping(footprints):
    """The keys of a non-overlapping subset of footprints, first come first served.

    A footprint is kept when it overlaps none kept before it (a shared edge is no overlap);
    footprints in different CRSs never overlap. SEN12MS tiles each scene with a stride of half
    a patch, so its neighbours overlap; the MoCo work pre-trains on such a subset (35 792 of
    180 662 patches).

    Args:
        footprints: ``(key, crs, (left, bottom, right, top))`` in the order of precedence.

    Returns:
        The kept keys, in that order.
    """
    kept, grids, widest = [], collections.defaultdict(lambda: collections.defaultdict(list)), {}
    for key, crs, box in footprints:
        left, bottom, right, top = box
        # A grid of cells the size of the first footprint: only boxes in neighbouring cells can overlap.
        cell, reach = widest.setdefault(crs, (right - left, (right - left, top - bottom)))
        reach = (max(reach[0], right - left), max(reach[1], top - bottom))
        widest[crs] = (cell, reach)
        eps = 1e-6 * max(cell, 1e-9)
        grid = grids[crs]
        cols = range(math.floor((left - reach[0]) / cell), math.floor(right / cell) + 1)
        rows = range(math.floor((bottom - reach[1]) / cell), math.floor(top / cell) + 1)
        clash = any(min(right, other[2]) - max(left, other[0]) > eps and min(top, other[3]) - max(bottom, other[1]) > eps
                    for c in cols for r in rows for other in grid.get((c, r), ()))
        if not clash:
            kept.append(key)
            grid[(math.floor(left / cell), math.floor(bottom / cell))].append(box)
    return kept


def footprint(paths):
    """``(crs, bounds)`` of the first readable file of `paths`, or None when none can be opened."""
    for path in paths:
        try:
            # Through the path's own open, as geotiff.read_raster reads (epath: local and remote alike).
            with (path.open("rb") if hasattr(path, "open") else open(path, "rb")) as f, rasterio.open(f) as src:
                return str(src.crs), tuple(src.bounds)
        except (rasterio.errors.RasterioError, OSError):
            continue
    return None


class Builder(SentinelBuilder):
    """SEN12MS (Schmitt et al. 2019): 180 662 Sentinel-1/Sentinel-2/MODIS triplets, 256 x 256 px.

    Splits: ``train`` and ``holdout`` (whole scenes, see :class:`Sen12msConfig`).
    Features: ``s1`` float32 dB [H, W, 2], ``s2`` uint16 [H, W, 13], ``lc`` uint8
    [H, W, 4] (not in config ``unlabelled``) — raw values, so normalisation and cropping stay runtime choices —
    ``s1_max``, ``s2_max`` (per-channel maxima of the raw patch), ``season``,
    ``scene``, ``patch`` and ``id``.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Raw s1/s2/lc as bytes-encoded HWC tensors; scene-grouped hold-out; skip report."}
    BUILDER_CONFIGS = [Sen12msConfig(name="all", description="All four seasons.")] + [
        Sen12msConfig(name=season, seasons=(season,), description=f"Only {layout.SEASON_FOLDERS[season]}.")
        for season in layout.SEASONS
    ] + [Sen12msConfig(name="nonoverlapping", non_overlapping=True,
                       description="All four seasons, only patches that overlap no patch kept before them."),
         Sen12msConfig(name="unlabelled", labels=False,
                       description="All four seasons, S1 and S2 without the lc labels: for pre-training.")]
    DEFAULT_CONFIG_NAME = "all"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download SEN12MS from mediaTUM record 1474000 (https://mediatum.ub.tum.de/1474000):
    the twelve archives ROIs<season>_{s1,s2,lc}.tar.gz, about 510 GB in all (a
    single season is enough to start: build config `spring`, `summer`, `fall`
    or `winter`). Extract them all into one folder, the manual_dir, so that it holds

        ROIs1158_spring/s1_1/ROIs1158_spring_s1_1_p30.tif
        ROIs1158_spring/s2_1/ROIs1158_spring_s2_1_p30.tif
        ROIs1158_spring/lc_1/ROIs1158_spring_lc_1_p30.tif
        ROIs1868_summer/...  ROIs1970_fall/...  ROIs2017_winter/...

    then run `tfds build tfds_builders/sen12ms --manual_dir DIR --data_dir OUT`.
    """

    @property
    def _kinds(self):
        """The rasters each example stores (and each patch must have a file of)."""
        return layout.SEN12MS_KINDS if self.builder_config.labels else ("s1", "s2")

    def _info(self):
        size = self.builder_config.patch_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                **raster_features(self._kinds, size),
                "season": tfds.features.ClassLabel(names=layout.SEASONS),
                "scene": tfds.features.Scalar(np.int32),
                "patch": tfds.features.Scalar(np.int32),
                "id": tfds.features.Text(),
            }),
            metadata=tfds.core.MetadataDict(),
            homepage="https://mediatum.ub.tum.de/1474000",
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        root = self._manual_root(dl_manager, _LAYOUT)
        scenes = []
        for season in config.seasons:
            folder = root / layout.SEASON_FOLDERS[season]
            if not folder.is_dir():
                present = sorted(p.name for p in root.iterdir())[:4]
                raise UserError(
                    f"manual_dir {root} has no folder {layout.SEASON_FOLDERS[season]} (season {season}); "
                    f"it holds {present or 'nothing'}; expected {_LAYOUT}"
                )
            ids = sorted({int(p.name.split("_", 1)[1]) for p in folder.iterdir()
                          if p.is_dir() and p.name.split("_", 1)[0] in layout.SEN12MS_KINDS and p.name.split("_", 1)[1].isdigit()})
            if not ids:
                raise UserError(f"{folder} has no scene folder (s1_<scene>, s2_<scene>, lc_<scene>); expected {_LAYOUT}")
            chosen = [s for s in ids if unit_hash("subset", season, s) < config.scene_fraction]
            # A tiny fraction of a small archive must still build something.
            scenes += [(season, s) for s in chosen or ids[:1]]
        # Scenes ranked by a stable hash: those below holdout_fraction are held out, among the scenes
        # with a complete triplet (a subset can leave a scene whose every sample would be skipped).
        # With few scenes, the hold-out still gets one and train keeps one with a complete triplet.
        ranked = sorted(scenes, key=lambda s: unit_hash("holdout", *s))
        complete = [s for s in ranked if set.intersection(*self._patches(root, *s).values())]
        holdout = held_out(complete, config.holdout_fraction)
        if config.holdout_fraction > 0 and not holdout:
            print(f"{self.info.full_name}: no holdout split: {len(complete)} of the {len(scenes)} scenes have a "
                  f"complete {'/'.join(self._kinds)} {'triplet' if len(self._kinds) == 3 else 'pair'}, and train "
                  "needs one", flush=True)
        train = [s for s in ranked if s not in holdout]
        self._kept = self._non_overlapping(root, scenes) if config.non_overlapping else None
        splits = {"train": self._generate_examples(root, train, "train")}
        if holdout:
            splits["holdout"] = self._generate_examples(root, holdout, "holdout")
        return splits

    def _patches(self, root, season, scene):
        """``{kind: patch ids with a file}`` of a scene, for each raster stored (s1, s2 and, with labels, lc)."""
        season_dir = root / layout.SEASON_FOLDERS[season]
        found = {}
        for kind in self._kinds:
            kind_dir = season_dir / f"{kind}_{scene}"
            names = (f.name for f in kind_dir.iterdir()) if kind_dir.is_dir() else ()
            found[kind] = {p for p in map(layout.patch_id, names) if p is not None}
        return found

    def _non_overlapping(self, root, scenes):
        """``{(season, scene, patch)}`` of the non-overlapping subset (:func:`non_overlapping`), in the order
        season (spring, summer, fall, winter), scene, patch; each footprint from its s2 file (else s1, lc).
        A patch whose files cannot be opened is left in, to be skipped and counted when it is read."""
        order = sorted(scenes, key=lambda s: (layout.SEASONS.index(s[0]), s[1]))
        footprints, unreadable = [], []
        for season, scene in order:
            for patch in sorted(set.union(*self._patches(root, season, scene).values())):
                paths = [root / layout.sen12ms_path(season, kind, scene, patch) for kind in ("s2", "s1", "lc")]
                found = footprint(paths)
                if found is None:
                    unreadable.append((season, scene, patch))
                else:
                    footprints.append(((season, scene, patch), *found))
        kept = non_overlapping(footprints)
        print(f"{self.info.full_name}: {len(kept)} of {len(footprints)} patches overlap no patch kept before them",
              flush=True)
        return set(kept) | set(unreadable)

    def _generate_examples(self, root, scenes, split):
        items = []
        for season, scene in scenes:
            # Every patch with any file: one that lacks a file is loaded to be skipped and counted.
            for patch in sorted(set.union(*self._patches(root, season, scene).values())):
                if self._kept is not None and (season, scene, patch) not in self._kept:
                    continue
                paths = {kind: root / layout.sen12ms_path(season, kind, scene, patch) for kind in self._kinds}
                key = f"{season}_{scene}_p{patch}"
                items.append((key, paths, dict(season=season, scene=scene, patch=patch, id=key)))
        return self._examples(items, split)
