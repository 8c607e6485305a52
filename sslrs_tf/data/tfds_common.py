"""What the SEN12MS and DFC2020 TFDS builders share: features, sample loading, the skip report.

A sample is a set of co-registered files (s1, s2, lc and, for DFC2020, dfc).
Problems are sorted into two kinds:

* expected in real archives, skipped and counted: a sample with a file missing
  (``missing_s2``, ...) or an S1 patch with non-finite values (``s1_nan``);
* a broken file (unreadable, truncated, wrong band count, dtype or size): the
  build stops with one line naming the file and what was expected, unless the
  config says ``on_error="skip"``, in which case it is counted as ``bad_file``.

The counts are printed at the end of the build and stored in the dataset's
``metadata.json`` (``builder.info.metadata["skipped"]``). TFDS writes into an
``incomplete`` folder and renames it only after success, so a failed build never
leaves a dataset that loads as complete.

A build given Beam options (``tfds build … --beam_pipeline_options=…``) reads the
samples in an Apache Beam pipeline (worker processes here, a cluster elsewhere);
its records, splits and skip counts are those of the plain build, which needs no
Beam. The driver lists the files; the workers read them.
"""

import collections
import hashlib
import logging
import re

import numpy as np
import tensorflow_datasets as tfds

from sslrs_tf.data.geotiff import KINDS, read_raster
from sslrs_tf.errors import DataError, UserError

ON_ERROR = ("raise", "skip")
BYTES = tfds.features.Encoding.BYTES
log = logging.getLogger("sslrs_tf.data")


def raster_feature(kind, size):
    """The stored TFDS feature of one file kind: raw values, bytes-encoded, ``[H, W, C]`` (``[H, W]`` for dfc)."""
    spec = KINDS[kind]
    shape = (size, size) if kind == "dfc" else (size, size, len(spec.bands))
    doc = f"{kind}: raw {spec.store_dtype}, bands {', '.join(spec.bands)}"
    return tfds.features.Tensor(shape=shape, dtype=np.dtype(spec.store_dtype), encoding=BYTES, doc=doc)


def channel_max_feature(kind):
    """Per-channel maximum of the raw patch, stored so that the ``per_patch_max`` normalisation of a crop needs no
    full-patch pass."""
    spec = KINDS[kind]
    return tfds.features.Tensor(shape=(len(spec.bands),), dtype=np.dtype(spec.store_dtype),
                                doc=f"{kind}_max: per-channel maximum of the raw {kind} patch")


def raster_features(kinds, size):
    """The stored features of a sample: each raster, plus the per-channel maxima of s1 and s2."""
    features = {kind: raster_feature(kind, size) for kind in kinds}
    features.update({f"{kind}_max": channel_max_feature(kind) for kind in kinds if kind in ("s1", "s2")})
    return features


def unit_hash(*parts):
    """A stable number in [0, 1) for `parts`: the same on every machine and Python version."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


def held_out(keys, fraction, salt="holdout"):
    """The keys put in a held-out split: those ranked first by a stable hash of ``(salt, *key)``, as many as
    hash below `fraction`, but at least one and never all when `fraction` > 0 and there are several keys
    (a small archive still gets both splits). A key's split does not depend on which other keys exist,
    except through that minimum and maximum."""
    parts = lambda key: key if isinstance(key, tuple) else (key,)  # noqa: E731
    ranked = sorted(keys, key=lambda k: unit_hash(salt, *parts(k)))
    if fraction <= 0 or len(ranked) < 2:
        return []
    n = sum(unit_hash(salt, *parts(k)) < fraction for k in ranked)
    return ranked[:min(max(n, 1), len(ranked) - 1)]


def check_config(config):
    """Validates the fields shared by the builder configs; raises :class:`UserError`."""
    if config.on_error not in ON_ERROR:
        raise UserError(f"config on_error must be one of {list(ON_ERROR)}. Received: on_error={config.on_error!r}")
    if not isinstance(config.patch_size, int) or config.patch_size < 1:
        raise UserError(f"config patch_size must be a positive integer. Received: patch_size={config.patch_size!r}")


class SkipReport:
    """Counts the samples a build skipped, by split and reason, with a few example paths."""

    def __init__(self):
        self.counts = collections.defaultdict(collections.Counter)
        self.examples = collections.defaultdict(set)

    def skip(self, split, reason, path):
        """Records that one sample of `split` was skipped for `reason`; `path` is the file concerned."""
        self.counts[split][reason] += 1
        self.examples[reason].add(str(path))
        log.info("skipped %s (%s)", path, reason)

    def total(self):
        """Number of skipped samples over all splits."""
        return sum(sum(c.values()) for c in self.counts.values())

    def to_dict(self):
        """The report as stored in the dataset's metadata."""
        return {
            "skipped": {split: dict(sorted(c.items())) for split, c in sorted(self.counts.items())},
            # The first paths by name, not by reading order: a Beam build reads in no fixed order.
            "skipped_examples": {reason: sorted(paths)[:5] for reason, paths in sorted(self.examples.items())},
        }

    def summary(self, name):
        """One line for the end of a build."""
        if not self.total():
            return f"{name}: no sample skipped"
        parts = [
            f"{split}: " + ", ".join(f"{n} {reason}" for reason, n in sorted(c.items()))
            for split, c in sorted(self.counts.items())
        ]
        return f"{name}: skipped {self.total()} sample(s) — " + "; ".join(parts)


def load_sample(paths, size, on_error, report, split):
    """Reads the co-registered files of one sample, or returns ``None`` if it is skipped.

    Args:
        paths: ``{kind: epath.Path}`` for every kind the sample must have.
        size: expected patch size in pixels.
        on_error: ``"raise"`` or ``"skip"`` for broken files.
        report: the :class:`SkipReport` that counts skipped samples.
        split: the split being built, for the report.
    """
    for kind, path in paths.items():
        if not path.exists():
            report.skip(split, f"missing_{kind}", path)
            return None
    sample = {}
    for kind, path in paths.items():
        try:
            sample[kind] = read_raster(path, kind, size)
        except DataError:
            if on_error == "raise":
                raise
            report.skip(split, "bad_file", path)
            return None
    if "s1" in sample and not np.isfinite(sample["s1"]).all():
        report.skip(split, "s1_nan", paths["s1"])
        return None
    for kind in ("s1", "s2"):
        if kind in sample:
            sample[f"{kind}_max"] = sample[kind].max(axis=(0, 1))
    return sample


def load_example(item, size, on_error, report, split):
    """``(key, example)`` of one ``(key, paths, extra)`` item (:func:`load_sample` plus `extra`), or None when
    the sample is skipped."""
    key, paths, extra = item
    sample = load_sample(paths, size, on_error, report, split)
    return None if sample is None else (key, dict(sample, **extra))


#: Namespace of the Beam metrics that carry a Beam build's skip report from the workers to the driver.
BEAM_NAMESPACE = "sslrs_tf.skipped"


def beam_load(item, load, args, split):
    """Beam's counterpart of ``load(item, *args, report, split)`` (a builder's loader, e.g. :func:`load_example`)
    for one item: yields ``(key, example)`` or nothing, and counts a skip in Beam metrics (a worker's
    :class:`SkipReport` would stay in the worker)."""
    from apache_beam.metrics import Metrics

    report = SkipReport()
    example = load(item, *args, report, split)
    for reason, n in report.counts[split].items():
        Metrics.counter(BEAM_NAMESPACE, f"{split}/{reason}").inc(n)
        for path in report.examples[reason]:
            Metrics.string_set(BEAM_NAMESPACE, f"examples/{reason}").add(path)
    if example is not None:
        yield example


def report_from_beam(result, report):
    """Adds the skips counted in a finished Beam pipeline's metrics to `report`."""
    from apache_beam.metrics.metric import MetricsFilter

    metrics = result.metrics().query(MetricsFilter().with_namespace(BEAM_NAMESPACE))
    paths = {}
    for found in metrics.get("string_sets", []):
        kept = found.committed if found.committed is not None else found.attempted
        paths[found.key.metric.name.split("/", 1)[1]] = sorted(kept or ())
    for found in metrics.get("counters", []):
        split, reason = found.key.metric.name.split("/", 1)
        # (a runner that keeps no committed values still has the attempted ones)
        count = found.committed if found.committed is not None else found.attempted
        if count:
            report.counts[split][reason] += count
    for reason, kept in paths.items():
        report.examples[reason].update(kept)


class SentinelBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the SEN12MS and DFC2020 builders: manual download, skip report, clear errors, plain or Beam build."""

    def _download_and_prepare(self, dl_manager, download_config):
        check_config(self.builder_config)
        self._report = SkipReport()
        self._beam = bool(download_config.beam_runner or download_config.beam_options)
        try:
            super()._download_and_prepare(dl_manager, download_config)
        except AssertionError as err:
            if "No examples were yielded" not in str(err):
                raise
            raise UserError(f"{self.info.full_name}: a split has no usable sample ({self._report.summary('skipped').split(' — ')[-1]})") from None
        except Exception as err:
            if not self._beam:
                raise
            # A Beam runner re-raises a worker's error as its own, with the worker's traceback as text.
            found = re.search(r"sslrs_tf\.errors\.(?:DataError|UserError): (.*)", str(err))
            if found:
                raise UserError(found.group(1).split(" [while running")[0]) from None
            empty = re.search(r"generated examples is 0 for split (\w+)", str(err))
            if empty:
                # The metrics of a failed pipeline are lost: the plain build can count the skips.
                raise UserError(f"{self.info.full_name}: split {empty.group(1)} has no usable sample; build without "
                                "Beam options to see the skip counts") from None
            raise
        # Filled before TFDS writes dataset_info, so the counts are kept with the dataset.
        self.info.metadata.update(self._report.to_dict())
        print(self._report.summary(self.info.full_name), flush=True)

    def _process_pipeline_result(self, pipeline_result):
        report_from_beam(pipeline_result, self._report)

    def _examples(self, items, split):
        """The examples of `split` from ``(key, paths, extra)`` items: a generator, or a Beam transform when the
        build was given Beam options (the same samples, read by Beam's workers)."""
        if self._beam:
            beam = tfds.core.lazy_imports.apache_beam
            return (beam.Create(items)
                    | f"Read_{split}" >> beam.FlatMap(beam_load, *self._loader(), split))
        return self._generate(items, split)

    def _loader(self):
        """``(load, args)``: a module-level function (Beam pickles it) that reads one item as
        ``load(item, *args, report, split)``, returning ``(key, example)`` or None (skipped)."""
        config = self.builder_config
        return load_example, (config.patch_size, config.on_error)

    def _generate(self, items, split):
        load, args = self._loader()
        for item in items:
            example = load(item, *args, self._report, split)
            if example is not None:
                yield example

    def _manual_root(self, dl_manager, expected):
        """The manual folder, checked to exist and be non-empty; `expected` describes its layout."""
        try:
            return dl_manager.manual_dir
        except AssertionError:
            # TFDS's own message is several lines and does not say which layout is
            # expected; `_manual_dir` is stable in the pinned tensorflow-datasets 4.9.10.
            root = dl_manager._manual_dir  # noqa: SLF001
        if not root:
            raise UserError(f"no manual_dir given; pass --manual_dir DIR holding {expected}") from None
        state = "is empty" if root.exists() else "does not exist"
        raise UserError(f"manual_dir {root} {state}; expected {expected}") from None
