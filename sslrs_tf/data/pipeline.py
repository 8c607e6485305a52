"""The one function that builds the tf.data pipeline a model trains or is evaluated on.

Design, and why:

* Every random choice is a function of ``(seed, epoch, position)`` — per-epoch
  shuffle seeds and stateless random crops — so epoch *k* is the same whether a
  run started at epoch 0 or resumed at *k* (``start_epoch``). A resumed run
  therefore sees exactly the data an uninterrupted run would have seen.
* Crops are aligned across S1, S2 and the label mask. Evaluation crops are
  deterministic: the centre crop, or tiles that cover the whole patch.
* What is read, and how a batch of records is parsed, is the dataset's
  :class:`~sslrs_tf.data.sources.Source`'s business (SEN12MS and DFC2020 are parsed in
  batches from the TFDS shards, decoding only the crop); the order of
  records, batching, skipping for a resume and prefetching are this module's.
* No Python runs per example: everything below is traced once by tf.data.

Example (datasets by name go through :func:`sslrs_tf.datasets.make_dataset`, same arguments):
>>> ds = make_dataset("data/tfds/sen12ms/all/1.0.0", "train", crop_size=128, batch_size=200)
>>> batch = next(iter(ds))     # {"s1": [200, 128, 128, 2], "s2": [200, 128, 128, 13]}
"""

import os

import tensorflow as tf
import tensorflow_datasets as tfds

from sslrs_tf.data.bands import MODALITY_BANDS, resolve_bands
from sslrs_tf.data.normalization import Normalization
from sslrs_tf.data.sources import ChipsSource, ReadSettings, SentinelSource, Source, label_subset
from sslrs_tf.errors import UserError

LABEL_KINDS = ("single", "multi", "segmentation")
EVAL_CROPS = ("center", "tiles")
SEASON_PAIRS = ("same", "any")
MISSING_BANDS = ("error", "zeros")


def as_source(dataset):
    """The :class:`~sslrs_tf.data.sources.Source` of `dataset`.

    Args:
        dataset: a ``Source``; a prepared TFDS builder of SEN12MS, DFC2020 or paired chips (or of a
            dataset stored the same way); or the path of a built dataset version folder (the one
            holding ``dataset_info.json``). Datasets by name: :mod:`sslrs_tf.datasets`.
    """
    if isinstance(dataset, Source):
        return dataset
    if isinstance(dataset, (str, os.PathLike)) and os.path.isfile(os.path.join(dataset, "dataset_info.json")):
        dataset = tfds.builder_from_directory(os.fspath(dataset))
    if isinstance(dataset, tfds.core.DatasetBuilder):
        return ChipsSource(dataset) if dataset.info.name == "paired_chips" else SentinelSource(dataset)
    raise UserError(f"{dataset!r} is not a dataset: expected a built dataset folder (holding dataset_info.json), "
                    "a TFDS builder or a Source; open datasets by name with sslrs_tf.datasets")


def make_dataset(
    dataset,
    split,
    *,
    modalities=("s1", "s2"),
    bands=None,
    normalization="per_sample_max",
    crop_size=None,
    training=True,
    eval_crop="center",
    label=None,
    label_source=None,
    label_scheme=None,
    label_fraction=1.0,
    label_count=None,
    class_balance=False,
    missing_bands="error",
    season_pairs="same",
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
        dataset: which built dataset (see :func:`as_source`): SEN12MS, DFC2020, or a catalog
            dataset (:class:`~sslrs_tf.data.catalog.CatalogSource`: EuroSAT, BigEarthNet; S2 only).
            By name: :func:`sslrs_tf.datasets.make_dataset`, which takes the same arguments.
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
        label_source: ``"dfc"`` or ``"lc"`` (default: ``"dfc"`` where present and the scheme allows, else ``"lc"``).
        label_scheme: the classes of the labels (SEN12MS, DFC2020: ``"dfc8"``, ``"igbp"``,
            ``"igbp_simple"``; BigEarthNet: ``"bigearthnet43"``, ``"bigearthnet19"``); default: the
            dataset's own (``dfc8``, the catalog's).
        label_fraction: share of the split's samples used, drawn once with a fixed seed.
        label_count: number of the split's samples used instead (e.g. 1 024), drawn the same way:
            nested with the fractions.
        class_balance: while training with a label (SEN12MS, DFC2020): repeat each kept sample
            by its :func:`~sslrs_tf.data.sources.balanced_copies`, computed from the single
            labels (whole-patch mask) of the samples the label fraction keeps, so that the
            classes come out about even (the research code's balanced DFC2020 validation
            split). Evaluation passes ignore it; training without a label refuses it.
        missing_bands: ``"error"`` or ``"zeros"`` for a band the dataset lacks (catalog datasets,
            paired chips storing fewer S2 bands).
        season_pairs: datasets storing seasons (SSL4EO-S12: one example per location), while training:
            S1 and S2 of one random season per sample (``"same"``), or each of its own random
            season (``"any"``). Evaluation reads the first season.
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
    source = as_source(dataset)
    examples = source.num_examples(split)  # a clear error for a split the dataset lacks
    settings = read_settings(modalities=modalities, bands=bands, normalization=normalization, crop_size=crop_size,
                             training=training, eval_crop=eval_crop, label=label, label_source=label_source,
                             label_scheme=label_scheme, label_fraction=label_fraction, label_count=label_count,
                             class_balance=bool(class_balance) and training,
                             missing_bands=missing_bands, season_pairs=season_pairs, batch_size=batch_size,
                             drop_remainder=training if drop_remainder is None else drop_remainder, seed=seed,
                             with_ids=with_ids)
    reader = source.reader(split, settings)
    if training:
        examples = source.epoch_size(split, settings)
    if training and settings.drop_remainder and examples < batch_size:
        # Every epoch would be empty, and the endless training dataset would look for a batch forever.
        raise UserError(f"batch_size {batch_size} is larger than the {examples} samples of split {split!r}: "
                        f"no full batch to train on")

    def one_epoch(epoch):
        # Stateless permutations seeded by (seed, epoch, block): the order of an
        # epoch does not depend on what ran before it, nor on TF's global seed
        # (Dataset.shuffle with a tensor seed fails when the global seed is 0).
        epoch_seed = tf.stack([tf.cast(seed, tf.int64), epoch])
        elements = reader.records(epoch_seed)
        if training:
            # A `shuffle_buffer`-record shuffle on top of the shuffled file order and the
            # global shuffle TFDS applies when writing.
            elements = _seeded_shuffle(elements, shuffle_buffer, epoch_seed * 1_000_003 + [1, 2])
        batches = elements.batch(batch_size, drop_remainder=settings.drop_remainder and label != "single")
        batches = batches.enumerate()
        if steps_per_epoch:
            batches = batches.take(steps_per_epoch)
        if start_step:
            batches = batches.skip(tf.where(tf.equal(epoch, start_epoch), tf.cast(start_step, tf.int64), 0))
        batches = batches.map(lambda i, r: reader.parse(epoch, i, r), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
        return reader.finish(batches)

    if training:
        stop = 2**62 if epochs is None else start_epoch + epochs
        ds = tf.data.Dataset.range(start_epoch, stop).flat_map(one_epoch)
    else:
        ds = one_epoch(tf.constant(0, tf.int64))
    return ds.prefetch(tf.data.AUTOTUNE)


def training_size(source, split, *, label=None, label_fraction=1.0, class_balance=False, label_source=None,
                  label_scheme=None, label_count=None):
    """The number of samples one training epoch of `split` passes over: after the label fraction and,
    with `class_balance`, counting each sample's copies (as :func:`make_dataset` reads them).

    With ``label="single"`` the pipeline later drops crops without a valid pixel; those are
    not subtracted here (they are known only once cropped).

    Args:
        source: what :func:`make_dataset` takes as its dataset (see :func:`as_source`).
        label, label_fraction, class_balance, label_source, label_scheme, label_count: as for
            :func:`make_dataset`.

    Example:
    >>> training_size(source, "validation", label="single", class_balance=True)   # > 986, DFC2020's stored samples
    """
    source = as_source(source)
    source.num_examples(split)  # a clear error for a split the dataset lacks
    _check_labels(label, label_fraction, class_balance, label_count)
    # Counting needs no modality, band or normalisation.
    settings = ReadSettings(modalities=(), bands={}, normalization=None, label=label, label_source=label_source,
                            label_scheme=label_scheme, label_fraction=label_fraction, label_count=label_count,
                            class_balance=bool(class_balance))
    return source.epoch_size(split, settings)


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


def read_settings(*, modalities, bands, normalization, label, label_fraction, eval_crop, class_balance=False,
                  label_count=None, season_pairs="same", **rest):
    """:class:`~sslrs_tf.data.sources.ReadSettings` from :func:`make_dataset`'s arguments, each checked."""
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
    if rest.get("missing_bands", "error") not in MISSING_BANDS:
        raise UserError(f"missing_bands must be one of {list(MISSING_BANDS)}. Received: "
                        f"missing_bands={rest['missing_bands']!r}")
    if season_pairs not in SEASON_PAIRS:
        raise UserError(f"season_pairs must be one of {list(SEASON_PAIRS)}. Received: season_pairs={season_pairs!r}")
    if eval_crop not in EVAL_CROPS:
        raise UserError(f"eval_crop must be one of {list(EVAL_CROPS)}. Received: eval_crop={eval_crop!r}")
    _check_labels(label, label_fraction, class_balance, label_count)
    return ReadSettings(modalities=modalities, bands=bands, normalization=normalization, label=label,
                        label_fraction=label_fraction, label_count=label_count, eval_crop=eval_crop,
                        class_balance=bool(class_balance), season_pairs=season_pairs, **rest)


def _check_labels(label, label_fraction, class_balance, label_count=None):
    if label is not None and label not in LABEL_KINDS:
        raise UserError(f"label must be one of {list(LABEL_KINDS)} or None. Received: label={label!r}")
    if not 0 < label_fraction <= 1:
        label_subset([], label_fraction)  # raises the range error
    if label_count is not None and (not isinstance(label_count, int) or label_count < 1 or label_fraction < 1):
        raise UserError("label_count must be a positive integer, and label_fraction 1 with it. "
                        f"Received: label_count={label_count!r}, label_fraction={label_fraction}")
    if class_balance and label is None:
        raise UserError("class_balance balances the classes of a labelled training split; set a label "
                        "(single, multi or segmentation) or turn class_balance off")
