"""The one function that builds the tf.data pipeline a model trains or is evaluated on.

Design, and why:

* Records are read straight from the TFDS shards and parsed **in batches**
  (``tf.io.parse_example`` + ``decode_raw`` on whole batches): measured on this
  project's machine, about 2x faster than per-example parsing.
* Every random choice is a function of ``(seed, epoch, position)`` — per-epoch
  shuffle seeds and stateless random crops — so epoch *k* is the same whether a
  run started at epoch 0 or resumed at *k* (``start_epoch``). A resumed run
  therefore sees exactly the data an uninterrupted run would have seen.
* Crops are aligned across S1, S2 and the label mask. Evaluation crops are
  deterministic: the centre crop, or tiles that cover the whole patch.
* The per-sample-max normalisation divides by the maxima of the whole patch
  (as the papers do, normalising before cropping), which the builders store
  per sample, so only the crop is decoded and normalised.
* No Python runs per example: everything below is traced once by tf.data.

Example:
>>> ds = make_dataset("sen12ms", "train", data_dir="data/tfds", config="all",
...                   crop_size=128, batch_size=200, normalization="per_sample_max")
>>> batch = next(iter(ds))     # {"s1": [200, 128, 128, 2], "s2": [200, 128, 128, 13]}
"""

import math
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from sslrs_tf.data import labels as label_ops
from sslrs_tf.data.bands import MODALITY_BANDS, band_indices, resolve_bands
from sslrs_tf.data.catalog import CATALOG, CatalogSource, check_bands, fill_missing
from sslrs_tf.data.normalization import Normalization
from sslrs_tf.errors import UserError

LABEL_KINDS = ("single", "multi", "segmentation")
EVAL_CROPS = ("center", "tiles")
LABEL_FRACTIONS_SEED = 0


def load_builder(dataset, data_dir=None, config=None):
    """Returns a prepared TFDS builder.

    Args:
        dataset: ``"sen12ms"``, ``"dfc2020"``, a catalog dataset (``"eurosat"``, ``"bigearthnet"``:
            a :class:`~sslrs_tf.data.catalog.CatalogSource` is returned), a prepared
            ``DatasetBuilder``, or the path of a built dataset version folder (the one
            holding ``dataset_info.json``).
        data_dir: TFDS data folder, for a dataset given by name.
        config: builder config name or object, for a dataset given by name.

    Raises:
        UserError: the dataset is unknown or has not been built in `data_dir`.
    """
    if isinstance(dataset, (tfds.core.DatasetBuilder, CatalogSource)):
        return dataset
    if dataset in CATALOG:
        return CatalogSource(dataset, data_dir)
    if os.path.isfile(os.path.join(str(dataset), "dataset_info.json")):
        return tfds.builder_from_directory(str(dataset))
    from sslrs_tf.data.build import make_builder

    builder = make_builder(dataset, data_dir, config)
    if not builder.is_prepared():
        raise UserError(
            f"dataset {builder.info.full_name} is not built in {builder.data_dir}; build it with "
            f"`tfds build tfds_builders/{dataset} --manual_dir DIR --data_dir {data_dir}`"
        )
    return builder


def kept_count(examples, fraction):
    """How many of `examples` samples a label fraction keeps: at least one."""
    return max(1, round(fraction * examples))


def label_subset(ids, fraction, seed=LABEL_FRACTIONS_SEED):
    """The ids kept at a label fraction: the same every run, and nested (1 % within 10 % within 50 %).

    Args:
        ids: all sample ids of the split.
        fraction: share of samples to keep, in (0, 1]; at least one sample is kept.
        seed: the fixed seed of the draw.
    """
    if not 0 < fraction <= 1:
        raise UserError(f"label_fraction must be in (0, 1]. Received: label_fraction={fraction}")
    ids = sorted(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    return sorted(ids[i] for i in order[:kept_count(len(ids), fraction)])


def split_ids(builder, split):
    """All sample ids of a split, read from the shards without decoding the rasters."""
    files = [os.fspath(f) for f in builder.info.splits[split].filepaths]
    ds = tf.data.TFRecordDataset(files).batch(1024)
    ds = ds.map(lambda r: tf.io.parse_example(r, {"id": tf.io.FixedLenFeature([], tf.string)})["id"])
    return [i.decode() for batch in ds.as_numpy_iterator() for i in batch]


def _crop_starts(size, crop, count):
    # `count` evenly spaced starts covering [0, size): tiles overlap when crop does not divide size.
    if count == 1:
        return [(size - crop) // 2]
    return [round(i * (size - crop) / (count - 1)) for i in range(count)]


_RASTERS = {  # kind: (stored dtype, channels)
    "s1": (tf.float32, 2),
    "s2": (tf.uint16, 13),
    "lc": (tf.uint8, 4),
    "dfc": (tf.uint8, 1),
}


def random_crop_offsets(seed, epoch, batch_index, n, size, crop):
    """``(top, left)`` int32 ``[n]`` of the random crops of one batch: a function of (seed, epoch, batch) only."""
    key = tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + epoch, batch_index])
    offsets = tf.random.stateless_uniform([2, n], key, 0, size - crop + 1, tf.int32)
    return offsets[0], offsets[1]


class _Parser:
    """Parses, crops, normalises and labels a batch of serialized examples.

    A crop's rows are one contiguous byte range of the stored HWC raster, so only
    that band is cut out (``tf.strings.substr``) and decoded: at 128 px crops of
    256 px patches this halves the bytes decoded and nearly doubles throughput.
    Columns are then gathered per sample.
    """

    def __init__(self, patch_size, modalities, bands, normalization, crop_size, training, eval_crop,
                 label, label_source, seed, with_ids):
        self.patch_size, self.modalities, self.bands = patch_size, modalities, bands
        self.normalization, self.crop, self.training = normalization, crop_size, training
        self.label, self.label_source = label, label_source
        self.seed, self.with_ids = seed, with_ids
        n = 1 if eval_crop == "center" else math.ceil(patch_size / crop_size)
        starts = _crop_starts(patch_size, crop_size, n)
        self.tiles = [(top, left) for top in starts for left in starts]

    def spec(self):
        keys = list(self.modalities) + ([self.label_source] if self.label else []) + ["id"]
        spec = {k: tf.io.FixedLenFeature([], tf.string) for k in keys}
        if self.normalization.method == "per_sample_max":
            for m in self.modalities:
                dtype = tf.float32 if m == "s1" else tf.int64  # TFDS stores integers as int64
                spec[f"{m}_max"] = tf.io.FixedLenFeature([_RASTERS[m][1]], dtype)
        return spec

    def crop_rows(self, raw, kind, top):
        """Decodes rows ``top .. top + crop`` (`top`: ``[B]``) of a batch of raw rasters: ``[B, crop, P, C]``."""
        dtype, channels = _RASTERS[kind]
        p, c = self.patch_size, self.crop
        if c < p:
            row_bytes = p * channels * dtype.size
            raw = tf.strings.substr(raw, top * row_bytes, tf.fill(tf.shape(top), c * row_bytes))
        return tf.reshape(tf.io.decode_raw(raw, dtype), [-1, c, p, channels])

    def __call__(self, epoch, batch_index, serialized):
        parsed = tf.io.parse_example(serialized, self.spec())
        n = tf.shape(serialized)[0]
        if self.training:
            views = [random_crop_offsets(self.seed, epoch, batch_index, n, self.patch_size, self.crop)]
        else:
            views = [(tf.fill([n], top), tf.fill([n], left)) for top, left in self.tiles]
        kinds = list(self.modalities) + ([self.label_source] if self.label else [])
        maxima = {m: parsed[f"{m}_max"] for m in self.modalities if f"{m}_max" in parsed}
        outs = [self._finish({k: self.crop_rows(parsed[k], k, top) for k in kinds}, left, maxima)
                for top, left in views]
        # Tiles of one sample stay together: [B, T, ...] -> [B * T, ...].
        out = {k: tf.reshape(tf.stack([o[k] for o in outs], 1), tf.concat([[-1], tf.shape(outs[0][k])[1:]], 0))
               for k in outs[0]}
        if self.with_ids:
            out["id"] = tf.repeat(parsed["id"], len(views))
        return out

    # XLA fuses the per-pixel passes (column crop, cast, clip, scale, label
    # lookup) into one: measured 1.8x faster per batch here, where every full
    # pass over a batch is bound by memory bandwidth. Parsing and decoding
    # cannot be compiled and stay outside.
    @tf.function(jit_compile=True)
    def _finish(self, rows, left, maxima):
        out = {}
        cols = left[:, None] + tf.range(self.crop)[None, :]
        crop = lambda x: x if self.crop == self.patch_size else tf.gather(x, cols, axis=2, batch_dims=1)  # noqa: E731
        for m in self.modalities:
            index = band_indices(m, self.bands[m])
            x, raw_max = crop(rows[m]), maxima.get(m)
            if len(index) < _RASTERS[m][1]:
                x = tf.gather(x, index, axis=-1)
                raw_max = None if raw_max is None else tf.gather(raw_max, index, axis=-1)
            out[m] = self.normalization(x, m, self.bands[m], raw_max=raw_max)
        if self.label:
            mask = crop(rows[self.label_source])[..., 0]
            mask = (label_ops.dfc10_to_classes if self.label_source == "dfc" else label_ops.igbp_to_classes)(mask)
            out["label"] = {"single": label_ops.single_label, "multi": label_ops.multi_label,
                            "segmentation": lambda m: m}[self.label](mask)
        return out


def make_dataset(
    dataset,
    split,
    *,
    data_dir=None,
    config=None,
    modalities=("s1", "s2"),
    bands=None,
    normalization="per_sample_max",
    crop_size=None,
    training=True,
    eval_crop="center",
    label=None,
    label_source=None,
    label_fraction=1.0,
    missing_bands="error",
    batch_size=32,
    drop_remainder=None,
    shuffle_buffer=512,
    seed=0,
    start_epoch=0,
    start_step=0,
    epochs=None,
    steps_per_epoch=None,
    with_ids=False,
):
    """Builds the batched, normalised, cropped input pipeline of one split.

    Args:
        dataset, data_dir, config: which built dataset (see :func:`load_builder`): SEN12MS,
            DFC2020, or a catalog dataset (``"eurosat"``, ``"bigearthnet"``; S2 only, see
            :mod:`sslrs_tf.data.catalog`).
        split: e.g. ``"train"``, ``"holdout"`` (SEN12MS), ``"validation"``, ``"test"`` (DFC2020),
            ``"train[:60%]"`` (catalog datasets, TFDS slicing).
        modalities: any of ``"s1"``, ``"s2"``; each becomes a key of the inputs.
        bands: ``{"s1": ..., "s2": ...}`` band names or set names (default: all bands).
        normalization: a :class:`Normalization`, its name or its config.
        crop_size: crop in pixels (default: the whole patch).
        training: random aligned crops, per-epoch shuffling, endless epochs;
            otherwise one deterministic pass (`eval_crop`).
        eval_crop: ``"center"`` (one crop) or ``"tiles"`` (overlapping crops covering the patch).
        label: ``None`` (inputs only), ``"single"``, ``"multi"`` or ``"segmentation"``.
        label_source: ``"dfc"`` or ``"lc"`` (default: ``"dfc"`` where present, else ``"lc"``).
        label_fraction: share of the split's samples used, drawn once with a fixed seed.
        missing_bands: catalog datasets: ``"error"`` or ``"zeros"`` for a band the dataset lacks.
        batch_size: samples per batch (global batch under a distribution strategy).
        drop_remainder: drop the last incomplete batch (default: when training).
        shuffle_buffer: records shuffled together (training): memory is about this many
            serialized samples (2.6 MB each at 256 px).
        seed: seed of shuffling and crops.
        start_epoch: first epoch to produce (for resuming: the same data as an uninterrupted run).
        start_step: batches of the first epoch already trained; they are skipped before
            they are parsed, and the rest are the batches an uninterrupted run would see.
        epochs: number of epochs to produce while training (default: endless).
        steps_per_epoch: batches per epoch (default: one pass). Each epoch is the first
            batches of its own shuffle, so epochs here are the trainer's epochs, which a
            resumed run relies on.
        with_ids: add the sample ``id`` to the inputs (SEN12MS, DFC2020).

    Returns:
        A ``tf.data.Dataset`` of ``inputs`` dicts or, with a label, ``(inputs, label)`` pairs:
        single-label int32 ``[B]`` (samples without a valid pixel are dropped),
        multi-label float32 ``[B, classes]``, segmentation uint8 ``[B, h, w]`` (255 = ignore).
    """
    source = load_builder(dataset, data_dir, config)
    examples = split_size(source, split)  # a clear error for a split the dataset lacks
    modalities = tuple(modalities)
    for m in modalities:
        if m not in MODALITY_BANDS:
            raise UserError(f"unknown modality {m!r}; expected s1 and/or s2")
    if not modalities:
        raise UserError("modalities must name at least one of s1, s2")
    try:
        bands = {m: resolve_bands(m, (bands or {}).get(m)) for m in modalities}
    except ValueError as err:
        raise UserError(str(err)) from None
    if not isinstance(normalization, Normalization):
        normalization = Normalization.from_config(normalization)
    if eval_crop not in EVAL_CROPS:
        raise UserError(f"eval_crop must be one of {list(EVAL_CROPS)}. Received: eval_crop={eval_crop!r}")
    if label is not None and label not in LABEL_KINDS:
        raise UserError(f"label must be one of {list(LABEL_KINDS)} or None. Received: label={label!r}")
    if not 0 < label_fraction <= 1:
        label_subset([], label_fraction)  # raises the range error
    drop_remainder = training if drop_remainder is None else drop_remainder
    if isinstance(source, CatalogSource):
        records, parse, finish = _catalog_reader(source, split, modalities, bands, normalization, crop_size,
                                                       training, eval_crop, label, label_fraction, missing_bands, seed)
    else:
        records, parse, finish = _sen12ms_reader(source, split, modalities, bands, normalization, crop_size,
                                                       training, eval_crop, label, label_source, label_fraction,
                                                       batch_size, drop_remainder, seed, with_ids)
    if label is not None and label_fraction < 1:
        examples = kept_count(examples, label_fraction)
    if training and drop_remainder and examples < batch_size:
        # Every epoch would be empty, and the endless training dataset would look for a batch forever.
        raise UserError(f"batch_size {batch_size} is larger than the {examples} samples of split {split!r}: "
                        f"no full batch to train on")

    def one_epoch(epoch):
        # Stateless permutations seeded by (seed, epoch, block): the order of an
        # epoch does not depend on what ran before it, nor on TF's global seed
        # (Dataset.shuffle with a tensor seed fails when the global seed is 0).
        epoch_seed = tf.stack([tf.cast(seed, tf.int64), epoch])
        elements = records(epoch_seed)
        if training:
            # A `shuffle_buffer`-record shuffle on top of the shuffled file order and the
            # global shuffle TFDS applies when writing.
            elements = _seeded_shuffle(elements, shuffle_buffer, epoch_seed * 1_000_003 + [1, 2])
        batches = elements.batch(batch_size, drop_remainder=drop_remainder and label != "single")
        batches = batches.enumerate()
        if steps_per_epoch:
            batches = batches.take(steps_per_epoch)
        if start_step:
            batches = batches.skip(tf.where(tf.equal(epoch, start_epoch), tf.cast(start_step, tf.int64), 0))
        batches = batches.map(lambda i, r: parse(epoch, i, r), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
        return finish(batches)

    if training:
        stop = 2**62 if epochs is None else start_epoch + epochs
        ds = tf.data.Dataset.range(start_epoch, stop).flat_map(one_epoch)
    else:
        ds = one_epoch(tf.constant(0, tf.int64))
    return ds.prefetch(tf.data.AUTOTUNE)


def _crop_size(crop_size, size):
    """The crop in pixels (default: the whole `size` px patch); a UserError if it does not fit."""
    if (crop_size or size) > size:
        raise UserError(f"crop_size {crop_size} is larger than the dataset's {size} px patches")
    return crop_size or size


def _seeded_shuffle(dataset, buffer_size, seeds):
    """``dataset.shuffle(buffer_size)`` whose order depends only on `seeds` (two int64 tensors, not both 0).

    Written by hand because ``Dataset.shuffle`` takes its seed through TF's global seed: the
    order would change with ``tf.random.set_seed``, and a tensor seed fails when the global
    seed is 0. The same shuffle op, given both seeds and a fixed seed generator, orders epoch
    *k* the same however the run got there (a resumed run included). The buffer holds
    references to the records: nothing is copied (a block shuffle by batch, gather and unbatch
    copied every 2.5 MB record three times and halved the pipeline's rate).
    """
    flat = tf.nest.flatten(dataset.element_spec)
    variant = tf.raw_ops.ShuffleDatasetV3(
        input_dataset=tf.data.experimental.to_variant(dataset), buffer_size=tf.cast(buffer_size, tf.int64),
        seed=seeds[0], seed2=seeds[1], seed_generator=tf.raw_ops.DummySeedGenerator(),
        reshuffle_each_iteration=False, output_types=[s.dtype for s in flat], output_shapes=[s.shape for s in flat])
    return tf.data.experimental.from_variant(variant, dataset.element_spec)


def _sen12ms_reader(builder, split, modalities, bands, normalization, crop_size, training, eval_crop, label,
                    label_source, label_fraction, batch_size, drop_remainder, seed, with_ids):
    """Records, batch parser and finisher of a SEN12MS or DFC2020 split (serialized TFDS shards)."""
    features = builder.info.features
    patch_size = features["s1"].shape[0]
    crop_size = _crop_size(crop_size, patch_size)
    label_source = label_source or ("dfc" if "dfc" in features else "lc")
    if label and label_source not in features:
        raise UserError(f"{builder.info.full_name} has no {label_source!r} labels")
    files = [os.fspath(f) for f in builder.info.splits[split].filepaths]
    keep = None
    if label_fraction < 1:
        kept = label_subset(split_ids(builder, split), label_fraction)
        keep = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(kept), tf.ones(len(kept), tf.int32)), 0)
    parser = _Parser(patch_size, modalities, bands, normalization, crop_size, training, eval_crop,
                     label, label_source, seed, with_ids)

    def records(epoch_seed):
        names = tf.constant(files)
        if training:
            names = tf.gather(names, tf.random.experimental.stateless_shuffle(tf.range(len(files)), epoch_seed))
        records = tf.data.Dataset.from_tensor_slices(names).interleave(
            tf.data.TFRecordDataset, cycle_length=min(4, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True)
        if keep is not None:
            records = records.filter(lambda r: keep.lookup(
                tf.io.parse_single_example(r, {"id": tf.io.FixedLenFeature([], tf.string)})["id"]) > 0)
        return records

    finish = _finisher(label, batch_size, drop_remainder, rebatch=len(parser.tiles) > 1 and not training)
    return records, parser, finish


def _catalog_reader(source, split, modalities, bands, normalization, crop_size, training, eval_crop, label,
                    label_fraction, missing_bands, seed):
    """Records, batch parser and finisher of a catalog dataset (see :mod:`sslrs_tf.data.catalog`)."""
    spec = source.spec
    if modalities != ("s2",):
        raise UserError(f"{spec.name} holds Sentinel-2 only; it feeds an S2 encoder (model.inputs: only_s2). "
                        f"Received: modalities={list(modalities)}")
    if label not in (None, spec.label):
        raise UserError(f"{spec.name} has {spec.label}-label targets; set data.label: {spec.label}. Received: label={label!r}")
    if eval_crop != "center":
        raise UserError(f"{spec.name} is evaluated on centre crops. Received: eval_crop={eval_crop!r}")
    wanted = list(bands["s2"])
    check_bands(source, wanted, missing_bands)
    present = [b for b in wanted if b in spec.bands]
    size, classes = spec.size, len(source.class_names)
    crop = _crop_size(crop_size, size)
    base = source.read(split)
    if label_fraction < 1:
        # TFDS shuffled the examples when writing: the first share is a fixed random draw, nested across fractions.
        base = base.take(kept_count(source.num_examples(split), label_fraction))
    base = base.map(lambda ex: {"s2": spec.raster(ex, present),
                                **({"label": spec.target(ex, classes)} if label else {})},
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def parse(epoch, batch_index, batch):
        x = batch["s2"]
        if crop < size:
            n = tf.shape(x)[0]
            if training:
                top, left = random_crop_offsets(seed, epoch, batch_index, n, size, crop)
            else:
                top = left = tf.fill([n], (size - crop) // 2)
            x = tf.gather(x, top[:, None] + tf.range(crop)[None, :], axis=1, batch_dims=1)
            x = tf.gather(x, left[:, None] + tf.range(crop)[None, :], axis=2, batch_dims=1)
        x = fill_missing(normalization(x, "s2", present), wanted, present)
        return ({"s2": x}, batch["label"]) if label else {"s2": x}

    return (lambda epoch_seed: base), parse, (lambda batches: batches)


def split_size(source, split):
    """Number of examples in `split` of a loaded dataset; a UserError names the splits it has."""
    if isinstance(source, CatalogSource):
        return source.num_examples(split)
    if split not in source.info.splits:
        raise UserError(f"{source.info.full_name} has no split {split!r}; it has {sorted(source.info.splits)}")
    return source.info.splits[split].num_examples


def class_names(source):
    """The class names of a loaded dataset's labels."""
    return source.class_names if isinstance(source, CatalogSource) else list(label_ops.CLASS_NAMES)


def _finisher(label, batch_size, drop_remainder, rebatch):
    """The last steps of an epoch: (inputs, label) pairs, the single-label filter, batch size restored."""

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
