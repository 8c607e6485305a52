"""Where the input pipeline's records come from: one interface over every dataset it reads.

:func:`sslrs_tf.data.pipeline.make_dataset` validates its keyword arguments into
one :class:`ReadSettings` and asks the dataset's :class:`Source` for a
:class:`Reader`: the records of an epoch, the parser of a batch of them, and the
last steps of an epoch. The sources:

* :class:`SentinelSource` — SEN12MS, DFC2020 and SSL4EO-S12 as the builders of
  ``tfds_builders/`` store them (raw rasters as bytes, parsed in batches; below), and
  :class:`ChipsSource`, the same for your own chips (``paired_chips``);
* :class:`~sslrs_tf.data.catalog.CatalogSource` — Sentinel-2 datasets of the TFDS
  catalog (EuroSAT, BigEarthNet).

What they share — how many samples a label fraction keeps, the random crops of a
batch, the crop size check — is here too, and the class-balancing rule of
:func:`balanced_copies`.
"""

import dataclasses
import math
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from sslrs_tf.data import labels as label_ops
from sslrs_tf.data import records
from sslrs_tf.data.bands import S1_BANDS, S2_BANDS
from sslrs_tf.errors import UserError

#: the fixed seed of the label-fraction draw (the same subset every run)
LABEL_FRACTIONS_SEED = 0


class SplitError(UserError):
    """A split the dataset does not have (the message names the splits it has)."""


@dataclasses.dataclass(frozen=True)
class ReadSettings:
    """How one split is read: :func:`~sslrs_tf.data.pipeline.make_dataset`'s arguments, validated.

    Args:
        modalities: the sensors to decode, e.g. ``("s1", "s2")``.
        bands: ``{modality: (band names)}`` for every modality.
        normalization: a :class:`~sslrs_tf.data.normalization.Normalization`.
        crop_size: crop in pixels, or None for the whole patch.
        training: random aligned crops (else deterministic `eval_crop` crops).
        eval_crop: ``"center"`` or ``"tiles"``.
        label: None, ``"single"``, ``"multi"`` or ``"segmentation"``.
        label_source: ``"dfc"``, ``"lc"`` or None (the source's default).
        label_scheme: the classes of the labels (:meth:`Source.label_names`), or None (the source's own).
        label_fraction: share of the split's samples kept, in (0, 1].
        label_count: number of the split's samples kept instead (e.g. 1 024), or None.
        class_balance: repeat each kept training sample by its :func:`balanced_copies`
            (the pipeline passes it only while training with a label).
        missing_bands: ``"error"`` or ``"zeros"`` for a band the dataset lacks.
        season_pairs: datasets storing seasons (SSL4EO-S12), while training: S1 and S2 of one random
            season (``"same"``) or each of its own (``"any"``: seasonal change as part of a positive pair).
        batch_size: samples per batch.
        drop_remainder: whether the last incomplete batch is dropped.
        seed: seed of the crops.
        with_ids: add each sample's ``id`` to the inputs.
    """

    modalities: tuple
    bands: dict
    normalization: object
    crop_size: int = None
    training: bool = True
    eval_crop: str = "center"
    label: str = None
    label_source: str = None
    label_scheme: str = None
    label_fraction: float = 1.0
    label_count: int = None
    class_balance: bool = False
    missing_bands: str = "error"
    season_pairs: str = "same"
    batch_size: int = 32
    drop_remainder: bool = True
    seed: int = 0
    with_ids: bool = False


@dataclasses.dataclass(frozen=True)
class Reader:
    """What a source hands the pipeline for one split.

    Args:
        records: ``epoch_seed -> tf.data.Dataset`` of the split's records in that epoch's
            file order (``epoch_seed``: int64 ``[2]``, from the seed and the epoch).
        parse: ``(epoch, batch_index, batch of records) -> inputs dict`` (with ``"label"``
            when labelled): crops, normalises, labels.
        finish: ``batched dataset -> dataset``: the last steps of an epoch (``(inputs, label)``
            pairs, re-batching).
    """

    records: object
    parse: object
    finish: object


class Source:
    """A dataset the pipeline can read. Subclasses set ``full_name`` and ``class_names`` and
    implement :meth:`num_examples` and :meth:`reader`."""

    #: the dataset's name with config and version, for messages
    full_name = ""
    #: one name per class of its labels
    class_names = ()

    def num_examples(self, split):
        """Number of examples of `split`; a :class:`SplitError` names the splits the dataset has."""
        raise NotImplementedError

    #: the label schemes it has besides its own (``data.label_scheme``), by name: their class names
    schemes = {}

    def label_names(self, scheme=None):
        """The class names of its labels under `scheme` (None: its own, :attr:`class_names`)."""
        if scheme is None:
            return tuple(self.class_names)
        if scheme not in self.schemes:
            raise UserError(f"{self.full_name} has no label scheme {scheme!r}; it has "
                            f"{', '.join(self.schemes) or 'only its own'}")
        return tuple(self.schemes[scheme])

    def reader(self, split, settings):
        """The :class:`Reader` of `split` read with `settings` (:class:`ReadSettings`)."""
        raise NotImplementedError

    def epoch_size(self, split, settings):
        """Number of records one epoch of `split` read with `settings` passes over (before any
        sample without a single label is dropped). Default: the label fraction's share."""
        examples = self.num_examples(split)
        return kept_count(examples, settings.label_fraction, settings.label_count)


def subsets(settings):
    """Whether `settings` keep only part of a split (a label fraction or count)."""
    return settings.label_fraction < 1 or settings.label_count is not None


def kept_count(examples, fraction, count=None):
    """How many of `examples` samples a label fraction keeps (at least one), or a label `count` (at most all)."""
    if count is not None:
        return min(count, examples)
    return max(1, round(fraction * examples)) if fraction < 1 else examples


def label_subset(ids, fraction, seed=LABEL_FRACTIONS_SEED, count=None):
    """The ids kept at a label fraction or count: the same every run, and nested (1 % within 10 % within 50 %,
    1 024 samples within any fraction that keeps more): each is a prefix of one fixed shuffle of the ids.

    Args:
        ids: all sample ids of the split.
        fraction: share of samples to keep, in (0, 1]; at least one sample is kept.
        seed: the fixed seed of the draw.
        count: number of samples to keep instead of a share.
    """
    if not 0 < fraction <= 1:
        raise UserError(f"label_fraction must be in (0, 1]. Received: label_fraction={fraction}")
    ids = sorted(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    return sorted(ids[i] for i in order[:kept_count(len(ids), fraction, count)])


def balanced_copies(labels):
    """How many times each sample is repeated so that the classes come out about even.

    The rule: ``copies_c = max(1, floor(n_max / n_c))``, with ``n_c`` the samples of
    class ``c`` and ``n_max`` the largest ``n_c``. Samples without a label (``-1``: no
    valid pixel) get 1 copy and are not counted.

    The research code (HSG-AIML/SSLTransformerRS) fine-tunes on a class-balanced copy of
    DFC2020's validation split (``splits/validation_observations_balanced_classes.csv``,
    986 rows -> 2 618). On its counts (Forest 76, Shrubland 37, Grassland 101, Wetlands
    180, Croplands 156, Urban 62, Barren 23, Water 351) this rule gives 4, 9, 3, 1, 2, 5,
    15, 1 copies: every published count but Wetlands, which has 2 copies there and 1
    here (351 / 180 = 1.95), so 2 438 rows instead of 2 618. Rounding instead of the
    floor would give Wetlands 2 but Forest 5 (4.6) and Urban 6 (5.7), both published
    otherwise.

    Args:
        labels: int array ``[n]`` of single labels (class indices, -1 for none).

    Returns:
        int64 array ``[n]``, at least 1 everywhere.
    """
    labels = np.asarray(labels, np.int64).reshape(-1)
    valid = labels >= 0
    copies = np.ones(len(labels), np.int64)
    if valid.any():
        counts = np.bincount(labels[valid])
        copies[valid] = np.maximum(1, counts.max() // counts[labels[valid]])
    return copies


def random_crop_offsets(seed, epoch, batch_index, n, size, crop):
    """``(top, left)`` int32 ``[n]`` of the random crops of one batch: a function of (seed, epoch, batch) only."""
    key = tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + epoch, batch_index])
    offsets = tf.random.stateless_uniform([2, n], key, 0, size - crop + 1, tf.int32)
    return offsets[0], offsets[1]


def checked_crop(crop_size, size):
    """The crop in pixels (default: the whole `size` px patch); a UserError if it does not fit."""
    if (crop_size or size) > size:
        raise UserError(f"crop_size {crop_size} is larger than the dataset's {size} px patches")
    return crop_size or size


def _crop_starts(size, crop, count):
    # `count` evenly spaced starts covering [0, size): tiles overlap when crop does not divide size.
    if count == 1:
        return [(size - crop) // 2]
    return [round(i * (size - crop) / (count - 1)) for i in range(count)]


_RASTERS = {  # kind: (stored dtype, channels); a paired-chips dataset stores fewer S2 bands when asked
    "s1": (tf.float32, 2),
    "s2": (tf.uint16, 13),
    "lc": (tf.uint8, 4),
    "dfc": (tf.uint8, 1),
    "mask": (tf.uint8, 1),
}


def fill_missing(x, bands, present):
    """Inserts a zero channel into normalised `x` (channels `present`) for each band of `bands` not present."""
    if len(present) == len(bands):
        return x
    zero = len(present)  # index of the appended zero channel
    order = [present.index(b) if b in present else zero for b in bands]
    return tf.gather(tf.concat([x, tf.zeros_like(x[..., :1])], axis=-1), order, axis=-1)


def check_stored_bands(name, stored, settings):
    """Raises a UserError when dataset `name`, storing the bands ``stored`` (``{modality: names}``), lacks a band
    `settings` ask for and ``missing_bands`` is ``"error"``."""
    for m in settings.modalities:
        lacking = [b for b in settings.bands[m] if b not in stored[m]]
        if lacking and settings.missing_bands == "error":
            raise UserError(f"{name} has no {m.upper()} band {', '.join(lacking)} (it has {', '.join(stored[m])}); "
                            "use an encoder trained without it (e.g. data.s2_bands: s2_10) or set "
                            "data.missing_bands: zeros")


class SentinelSource(Source):
    """SEN12MS, DFC2020 or SSL4EO-S12 as the builders of ``tfds_builders/`` write them.

    Records are read straight from the TFDS shards and parsed **in batches** (about 2x
    faster than per-example parsing here): the small features by ``tf.io.parse_example``,
    the crops cut from the records themselves (:class:`_Parser`). Crops are aligned across
    S1, S2 and the label mask; only the bytes of a crop are decoded. ``per_sample_max`` divides by the maxima of
    the crop (as the papers do); ``per_patch_max`` by those of the whole stored patch,
    which the builders store per sample (``s1_max``, ``s2_max``).

    With ``class_balance`` (training), each kept sample's record is repeated by its
    :func:`balanced_copies`, computed from the single labels of the kept samples
    (:meth:`split_labels`); the copies of a record come one after the other, and the
    pipeline's shuffle buffer mixes them.

    Args:
        builder: a prepared TFDS builder of either dataset (or of a dataset stored the
            same way, e.g. one loaded with ``tfds.builder_from_directory``).
    """

    class_names = tuple(label_ops.CLASS_NAMES)
    schemes = label_ops.SCHEMES

    def __init__(self, builder):
        self.builder = builder
        self.full_name = builder.info.full_name
        features = builder.info.features
        shape = features["s1"].shape
        #: seasons per example (SSL4EO-S12: a location's seasons), or None (one S1/S2 pair per example)
        self.seasons = shape[0] if len(shape) == 4 else None
        #: height and width of the stored rasters
        self.patch_size = shape[-2]
        #: ``{kind: (dtype, channels)}`` of the rasters stored
        self.rasters = {k: (v[0], features[k].shape[-1] if k in ("s1", "s2") else v[1])
                        for k, v in _RASTERS.items() if k in features}
        #: ``{modality: band names}`` of the stored channels, in order
        self.stored_bands = {"s1": S1_BANDS, "s2": tuple((builder.info.metadata or {}).get("s2_bands", S2_BANDS))}
        self._labels = {}  # (split, label source, scheme) -> split_labels(), read once
        self._checked = set()  # splits whose shards matched dataset_info.json

    def num_examples(self, split):
        """Number of examples of `split`: a split's name, or several joined by ``+`` (``"train+holdout"``:
        every SEN12MS patch, as the papers pre-train)."""
        splits = self.builder.info.splits
        for part in split.split("+"):
            if part not in splits:
                raise SplitError(f"{self.full_name} has no split {part!r}; it has {sorted(splits)}")
            self._check_shards(part)
        return sum(splits[part].num_examples for part in split.split("+"))

    def _check_shards(self, split):
        """Refuses a split whose shard files do not add up to what ``dataset_info.json`` records.

        TensorFlow reads a truncated TFRecord file as a shorter one, and the pipeline repeats what it
        gets: an interrupted copy would train on part of the split without a word. The byte count is
        checked for every split opened (a TFRecord holds each record plus 16 bytes of framing, so the
        files of a split hold ``num_bytes + 16 * num_examples``); only when it differs are the shards'
        records counted, to name the one that is off.
        """
        if split in self._checked:
            return
        info = self.builder.info.splits[split]
        files = [os.fspath(f) for f in info.filepaths]
        sizes = []
        for f in files:
            try:
                sizes.append(tf.io.gfile.stat(f).length)
            except tf.errors.NotFoundError:
                raise UserError(f"{f}: missing (dataset_info.json lists it); build or copy the dataset again") from None
        expected = int(info.num_bytes) + 16 * info.num_examples
        if sum(sizes) != expected:
            for f, records in zip(files, info.shard_lengths, strict=True):
                found, cut = 0, ""
                try:
                    for _ in tf.data.TFRecordDataset(f):
                        found += 1
                except tf.errors.DataLossError:  # the file ends inside a record
                    cut = ", then a truncated one"
                if found != records or cut:
                    raise UserError(f"{f}: {found} of the {records} records dataset_info.json lists{cut} (a "
                                    "truncated or damaged copy); build or copy the dataset again")
            raise UserError(f"{self.full_name} split {split}: its shards hold {sum(sizes)} bytes, dataset_info.json "
                            f"says {expected}; build or copy the dataset again")
        self._checked.add(split)

    def split_ids(self, split):
        """All sample ids of a split, read from the shards without decoding the rasters."""
        ds = tf.data.TFRecordDataset(self._files(split)).batch(1024)
        ds = ds.map(lambda r: tf.io.parse_example(r, {"id": tf.io.FixedLenFeature([], tf.string)})["id"])
        return [i.decode() for batch in ds.as_numpy_iterator() for i in batch]

    def split_labels(self, split, label_source=None, label_scheme=None):
        """``{id: single label}`` of every sample of a split, in stored order: the most frequent valid
        class of the whole patch's mask (-1 where no pixel is valid).

        Reads only the ids and the label rasters (no S1/S2 decoding), once per split, label
        source and scheme: the answer is kept.

        Args:
            label_source: ``"dfc"`` or ``"lc"`` (default: see :meth:`label_source`).
            label_scheme: a name of :data:`~sslrs_tf.data.labels.SCHEMES` (default ``"dfc8"``).
        """
        self.num_examples(split)  # a clear error for a split the dataset lacks
        label_source, scheme = self.label_source(label_source, label_scheme), label_scheme or "dfc8"
        key = (split, label_source, scheme)
        if key in self._labels:
            return dict(self._labels[key])
        size, channels = self.patch_size, self.rasters[label_source][1]
        num_classes = len(self.label_names(label_scheme))
        spec = {k: tf.io.FixedLenFeature([], tf.string) for k in ("id", label_source)}

        def labels(records):
            parsed = tf.io.parse_example(records, spec)
            mask = tf.reshape(tf.io.decode_raw(parsed[label_source], tf.uint8), [-1, size, size, channels])[..., 0]
            return parsed["id"], label_ops.single_label(self.to_classes(mask, label_source, scheme), num_classes)

        ds = tf.data.TFRecordDataset(self._files(split)).batch(256).map(labels)
        self._labels[key] = {i.decode(): int(y) for ids, ys in ds.as_numpy_iterator()
                             for i, y in zip(ids, ys, strict=True)}
        return dict(self._labels[key])

    def epoch_size(self, split, settings):
        if not settings.class_balance:
            return super().epoch_size(split, settings)
        return int(sum(self._copies(split, settings).values()))

    def to_classes(self, mask, label_source, scheme):
        """The class indices of `scheme` (255 ignored) of a batch of label rasters' first band from `label_source`."""
        return label_ops.to_scheme(mask, label_source, scheme)

    def label_source(self, label_source=None, label_scheme=None):
        """The label raster labels are read from: `label_source`, else ``"dfc"`` where the dataset has it and
        `label_scheme` can be derived from it, else ``"lc"``; checked against the dataset and the scheme."""
        scheme = label_scheme or "dfc8"
        self.label_names(label_scheme)  # a clear error for an unknown scheme
        features = self.builder.info.features
        allowed = label_ops.SCHEME_SOURCES[scheme]
        chosen = label_source or ("dfc" if "dfc" in features and "dfc" in allowed else "lc")
        if chosen not in features:
            unlabelled = not any(k in features for k in ("lc", "dfc"))
            raise UserError(f"{self.full_name} has no {chosen!r} labels" + (
                ": it was built without labels (config labels: false, for pre-training); build a config with "
                "labels (e.g. all) to train or evaluate with them" if unlabelled else ""))
        if chosen not in allowed:
            raise UserError(f"{self.full_name}: label scheme {scheme} is derived from {' or '.join(allowed)} labels, "
                            f"not {chosen!r}")
        return chosen

    def _copies(self, split, settings):
        """``{id: copies}`` of the samples an epoch reads: the label fraction's (or count's), each balanced
        when asked."""
        if settings.class_balance:
            labels = self.split_labels(split, settings.label_source, settings.label_scheme)
            ids = list(labels)
        else:
            ids = self.split_ids(split)
        if subsets(settings):
            ids = label_subset(ids, settings.label_fraction, count=settings.label_count)
        if not settings.class_balance:
            return dict.fromkeys(ids, 1)
        # Balanced over the kept samples: nested fractions stay nested.
        return dict(zip(ids, balanced_copies([labels[i] for i in ids]).tolist(), strict=True))

    def _files(self, split):
        for part in split.split("+"):
            self._check_shards(part)
        return [os.fspath(f) for part in split.split("+") for f in self.builder.info.splits[part].filepaths]

    def reader(self, split, settings):
        patch_size = self.patch_size
        crop = checked_crop(settings.crop_size, patch_size)
        if settings.label or settings.class_balance:
            label_source = self.label_source(settings.label_source, settings.label_scheme)
        else:
            label_source = None
        files = self._files(split)
        copies = None
        if subsets(settings) or settings.class_balance:
            # id -> how often its record is read in an epoch (0: not kept).
            kept = self._copies(split, settings)
            copies = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(list(kept), tf.string),
                                                    tf.constant(list(kept.values()), tf.int64)),
                tf.constant(0, tf.int64))
        check_stored_bands(self.full_name, self.stored_bands, settings)
        parser = _Parser(self, patch_size, crop, label_source, settings)
        # Local shards are read straight into each record, without TFRecordDataset's 256 KB buffer (one copy of
        # every record less: measured here, 5 % less CPU per sample at 128 px crops). Remote ones
        # (gs://, s3://) keep it: unbuffered, every 12-byte record header would be a request of its own.
        buffer_size = 0 if not any("://" in f for f in files) else None

        def records(epoch_seed):
            names = tf.constant(files)
            if settings.training:
                names = tf.gather(names, tf.random.experimental.stateless_shuffle(tf.range(len(files)), epoch_seed))
            records = tf.data.Dataset.from_tensor_slices(names).interleave(
                lambda f: tf.data.TFRecordDataset(f, buffer_size=buffer_size), cycle_length=min(4, len(files)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            if copies is not None:
                def count(r):
                    parsed = tf.io.parse_single_example(r, {"id": tf.io.FixedLenFeature([], tf.string)})
                    return copies.lookup(parsed["id"])

                if settings.class_balance:
                    records = records.flat_map(lambda r: tf.data.Dataset.from_tensors(r).repeat(count(r)))
                else:
                    records = records.filter(lambda r: count(r) > 0)
            return records

        rebatch = len(parser.tiles) > 1 and not settings.training
        return Reader(records, parser, labelled_pairs(settings, rebatch))


class ChipsSource(SentinelSource):
    """A dataset of the ``paired_chips`` builder (your own chips): read as SEN12MS is, with the classes, task
    and S2 bands its build recorded (``builder.info.metadata``); labels come from its ``mask``, whose
    values are already class indices (255 ignored). A classification dataset's mask is each chip's class
    everywhere, so its single label is that class; it has no segmentation target.

    Args:
        builder: a prepared ``paired_chips`` builder (or one loaded with ``tfds.builder_from_directory``).
    """

    schemes = {}

    def __init__(self, builder):
        super().__init__(builder)
        metadata = builder.info.metadata or {}
        self.class_names = tuple(metadata.get("classes", ()))
        #: None (unlabelled), "classification" or "segmentation"
        self.task = metadata.get("task")

    def to_classes(self, mask, label_source, scheme):
        return mask

    def label_source(self, label_source=None, label_scheme=None):
        self.label_names(label_scheme)  # a clear error for a scheme
        if not self.class_names:
            raise UserError(f"{self.full_name} has no labels: it was built without classes (an unlabelled dataset "
                            "for pre-training); build it with the config's classes to fine-tune on it")
        if label_source not in (None, "mask"):
            raise UserError(f"{self.full_name} has labels only in its mask, not {label_source!r}")
        return "mask"

    def reader(self, split, settings):
        if settings.label == "segmentation" and self.task == "classification":
            raise UserError(f"{self.full_name} has a class per chip (classification), no mask to segment; use "
                            "data.label: single")
        return super().reader(split, settings)


class _Parser:
    """Parses, crops, normalises and labels a batch of serialized examples.

    In the stored HWC raster, each row of a crop is one contiguous byte range, so
    only those ranges are cut out (``tf.strings.substr``, one per crop row) and
    decoded: a 128 px crop of a 256 px patch decodes a quarter of the patch's bytes
    and needs no gather afterwards (measured 1.15x the samples/s of decoding the
    crop's whole rows and gathering the columns). The rows are cut from the records
    themselves, where :func:`~sslrs_tf.data.records.locate_bytes` finds the rasters:
    ``parse_example`` reads only the small features, and would have copied every
    raster whole. A batch whose records it does not find laid out as expected is
    parsed the ordinary way.
    """

    def __init__(self, source, patch_size, crop, label_source, settings):
        self.source = source
        self.patch_size, self.crop, self.label_source, self.settings = patch_size, crop, label_source, settings
        self.modalities, self.label = settings.modalities, settings.label
        n = 1 if settings.eval_crop == "center" else math.ceil(patch_size / crop)
        starts = _crop_starts(patch_size, crop, n)
        self.tiles = [(top, left) for top in starts for left in starts]
        #: the rasters cut from each record
        self.kinds = list(self.modalities) + ([self.label_source] if self.label else [])
        self.features = len(tfds.core.utils.flatten_nest_dict(source.builder.info.features.get_serialized_info()))

    def raster_bytes(self, kind):
        """Bytes of the stored raster `kind` (all its seasons) in a record."""
        dtype, channels = self.source.rasters[kind]
        return (self.source.seasons or 1) * self.patch_size ** 2 * channels * dtype.size

    def spec(self):
        """What ``parse_example`` reads: the id and the maxima it needs (the rasters: :meth:`rasters`)."""
        spec = {"id": tf.io.FixedLenFeature([], tf.string)}
        if self.settings.normalization.method == "per_patch_max":
            # Only per_patch_max divides by the whole patch's maxima, which the builders store.
            seasons = [self.source.seasons] if self.source.seasons else []
            for m in self.modalities:
                dtype = tf.float32 if m == "s1" else tf.int64  # TFDS stores integers as int64
                spec[f"{m}_max"] = tf.io.FixedLenFeature([*seasons, self.source.rasters[m][1]], dtype)
        return spec

    def decode_crop(self, raw, offset, kind, top, left, season=None):
        """Decodes the crops at ``top``, ``left`` (``[B]`` each) of a batch of rasters, each stored from byte
        ``offset`` (``[B]``) of its string in `raw`: ``[B, crop, crop, C]``; of the season ``season`` (``[B]``)
        of each where the dataset stores several."""
        dtype, channels = self.source.rasters[kind]
        p, c = self.patch_size, self.crop
        pixel = channels * dtype.size
        if c < p:
            rows = tf.range(c, dtype=tf.int64)[None, :]  # one range per row
            starts = ((tf.cast(top, tf.int64)[:, None] + rows) * p + tf.cast(left, tf.int64)[:, None]) * pixel
        else:
            starts = tf.zeros([tf.shape(raw)[0], 1], tf.int64)  # the whole raster: one range
        starts += offset[:, None]
        if season is not None:
            starts += tf.cast(season, tf.int64)[:, None] * (p * p * pixel)
        length = tf.constant(c * pixel if c < p else p * p * pixel, tf.int64)
        raw = tf.strings.substr(raw[:, None], starts, tf.fill(tf.shape(starts), length))
        return tf.reshape(tf.io.decode_raw(raw, dtype), [-1, c, c, channels])

    def rasters(self, serialized):
        """``({kind: strings [B]}, {kind: offsets [B]})``: where each raster of a batch of records lies."""
        sizes = {k: self.raster_bytes(k) for k in self.kinds}
        offsets, ok = records.locate_bytes(serialized, sizes, self.features)

        def parsed():
            rasters = tf.io.parse_example(serialized, {k: tf.io.FixedLenFeature([], tf.string) for k in sizes})
            # A raster of another size is an error, never a crop of part of it.
            checks = [tf.debugging.assert_equal(tf.strings.length(rasters[k]), size,
                                                message=f"{self.source.full_name}: a record's {k} raster is not "
                                                        f"{size} bytes") for k, size in sizes.items()]
            with tf.control_dependencies(checks):
                return [tf.identity(rasters[k]) for k in sizes], [tf.zeros_like(offsets[k]) for k in sizes]

        strings, starts = tf.cond(ok, lambda: ([serialized] * len(sizes), [offsets[k] for k in sizes]), parsed)
        return dict(zip(sizes, strings, strict=True)), dict(zip(sizes, starts, strict=True))

    def __call__(self, epoch, batch_index, serialized):
        parsed = tf.io.parse_example(serialized, self.spec())
        raw, offsets = self.rasters(serialized)
        n = tf.shape(serialized)[0]
        if self.settings.training:
            views = [random_crop_offsets(self.settings.seed, epoch, batch_index, n, self.patch_size, self.crop)]
        else:
            views = [(tf.fill([n], top), tf.fill([n], left)) for top, left in self.tiles]
        seasons = self.seasons(epoch, batch_index, n)
        maxima = {m: parsed[f"{m}_max"] for m in self.modalities if f"{m}_max" in parsed}
        maxima = {m: tf.gather(v, seasons[m], batch_dims=1) if seasons else v for m, v in maxima.items()}
        outs = [self._finish({k: self.decode_crop(raw[k], offsets[k], k, top, left, seasons.get(k))
                              for k in self.kinds}, maxima)
                for top, left in views]
        # Tiles of one sample stay together: [B, T, ...] -> [B * T, ...] (one view: as it is, not copied by a stack).
        out = outs[0] if len(outs) == 1 else {
            k: tf.reshape(tf.stack([o[k] for o in outs], 1), tf.concat([[-1], tf.shape(outs[0][k])[1:]], 0))
            for k in outs[0]}
        if self.settings.with_ids:
            out["id"] = tf.repeat(parsed["id"], len(views))
        return out

    def seasons(self, epoch, batch_index, n):
        """``{modality: season [n]}`` of a batch of a dataset with seasons, else ``{}``. Training: a random
        season per sample, a function of (seed, epoch, batch) only (``season_pairs: same``: one for S1 and
        S2; ``any``: one each); evaluation: the first season."""
        count = self.source.seasons
        if not count:
            return {}
        if not self.settings.training:
            return {m: tf.zeros([n], tf.int32) for m in self.modalities}
        # Another stream than the crops' (random_crop_offsets keys on batch_index >= 0).
        key = tf.stack([tf.cast(self.settings.seed, tf.int64) * 1_000_003 + epoch, -1 - batch_index])
        draws = tf.random.stateless_uniform([2, n], key, 0, count, tf.int32)
        return {m: draws[0] if self.settings.season_pairs == "same" or m == "s1" else draws[1]
                for m in self.modalities}

    # XLA fuses the per-pixel passes (cast, clip, scale, label lookup) into one:
    # measured 1.8x faster per batch here, where every full pass over a batch is
    # bound by memory bandwidth. Parsing and decoding cannot be compiled and stay
    # outside.
    @tf.function(jit_compile=True)
    def _finish(self, crops, maxima):
        out = {}
        bands, normalization = self.settings.bands, self.settings.normalization
        for m in self.modalities:
            stored = self.source.stored_bands[m]
            present = tuple(b for b in bands[m] if b in stored)
            index = [stored.index(b) for b in present]
            x, raw_max = crops[m], maxima.get(m)
            if index != list(range(len(stored))):
                x = tf.gather(x, index, axis=-1)
                raw_max = None if raw_max is None else tf.gather(raw_max, index, axis=-1)
            # A band the dataset lacks (data.missing_bands: zeros) is a channel of zeros after normalisation.
            out[m] = fill_missing(normalization(x, m, present, raw_max=raw_max), bands[m], present)
        if self.label:
            scheme = self.settings.label_scheme or "dfc8"
            mask = self.source.to_classes(crops[self.label_source][..., 0], self.label_source, scheme)
            classes = len(self.source.label_names(self.settings.label_scheme))
            out["label"] = {"single": lambda m: label_ops.single_label(m, classes),
                            "multi": lambda m: label_ops.multi_label(m, classes),
                            "segmentation": lambda m: m}[self.label](mask)
        return out


def labelled_pairs(settings, rebatch=False):
    """The last steps of an epoch of parsed batches: ``(inputs, label)`` pairs when labelled; samples
    without a single label dropped and the batch size restored; `rebatch`: tiles multiplied the batch."""
    label, batch_size, drop_remainder = settings.label, settings.batch_size, settings.drop_remainder

    def finish(batches):
        if label is not None:
            batches = batches.map(lambda d: ({k: v for k, v in d.items() if k != "label"}, d["label"]))
        if label == "single":
            # Samples without a valid pixel have no single label: drop them, then re-batch.
            batches = batches.unbatch().filter(lambda x, y: y >= 0)
        elif rebatch:
            batches = batches.unbatch()  # tiles multiply the batch: restore its size
        else:
            return batches
        return batches.batch(batch_size, drop_remainder=drop_remainder)

    return finish
