"""From a run config to the things it names: bands, the data source, the datasets of a split, the method.

Training (:mod:`sslrs_tf.training.run`), evaluation (:mod:`sslrs_tf.evaluation.evaluate`), the
quick start and the protocol all start a run here, so that a config means the same thing to
each of them. The checks that need more than one section of a config (a method and its
backbone, a Swin and its crop, a label kind and the method that trains on it, ...) are here
too: each method says what it accepts (:class:`~sslrs_tf.methods.base.Method`'s class
attributes), this module says it to the user in the config's own words.

Example:
>>> experiment = Experiment(load_config("configs/tiny.yaml"))
>>> train = experiment.dataset("train", training=True)
>>> model = experiment.build_method(next(iter(train)))     # variables created, pretrained weights loaded
"""

import dataclasses
import functools
import pathlib

from sslrs_tf.data.bands import resolve_bands
from sslrs_tf.data.labels import NUM_CLASSES
from sslrs_tf.data.normalization import Normalization
from sslrs_tf.data.pipeline import make_dataset, training_size
from sslrs_tf.data.sources import SplitError
from sslrs_tf.datasets import BUILDERS, WORLD, build, open_source, prepare_world, synthetic_config
from sslrs_tf.errors import UserError
from sslrs_tf.methods import get_method
from sslrs_tf.methods.base import MethodInputs
from sslrs_tf.methods.downstream import INPUTS, DownstreamMethod
from sslrs_tf.models.batch_norm import fuse_batch_norm
from sslrs_tf.models.encoders import BACKBONES
from sslrs_tf.models.pretrained import CARD_INPUTS, card_settings, load_card, load_encoders
from sslrs_tf.models.swin import SWINS, check_image_size


def config_bands(config):
    """``{"s1": (...), "s2": (...)}``: the band names of ``data.s1_bands`` and ``data.s2_bands``, checked
    against ``data.normalization``."""
    try:
        bands = {"s1": resolve_bands("s1", config.data.s1_bands), "s2": resolve_bands("s2", config.data.s2_bands)}
    except ValueError as err:
        raise UserError(f"config: data bands: {err}") from None
    norm = Normalization(config.data.normalization)
    for modality, names in bands.items():
        try:
            norm.describe(modality, names)
        except ValueError as err:
            raise UserError(f"config: data.normalization {norm.method} with data.{modality}_bands: {err}") from None
    return bands


def check_config(config):
    """Raises a one-line UserError for a config whose sections contradict each other; returns its bands
    (:func:`config_bands`)."""
    m, d = config.model, config.data
    cls = get_method(m.method)
    if m.backbone not in cls.BACKBONES:
        raise UserError(f"config: model.method {m.method} is built with model.backbone {' or '.join(cls.BACKBONES)}; "
                        f"received {m.backbone!r}")
    problem = cls.config_problem(m)
    if problem:
        raise UserError(f"config: {problem}")
    if d.label not in cls.LABELS:
        wanted = " or ".join("null" if kind is None else kind for kind in cls.LABELS)
        raise UserError(f"config: model.method {m.method} needs data.label {wanted}; received {d.label!r}")
    if d.validation_dataset and d.dataset not in BUILDERS:
        raise UserError(f"config: data.validation_dataset {d.validation_dataset} goes with data.dataset "
                        f"{' or '.join(BUILDERS)}; received {d.dataset}")
    if config.train.jit_compile and config.train.deterministic:
        raise UserError("config: train.jit_compile=true needs train.deterministic=false (Keras compiles no step "
                        "with XLA while TensorFlow's op determinism is on)")
    if d.label_count is not None and d.label_fraction < 1:
        raise UserError(f"config: data.label_count and data.label_fraction each choose the labelled samples: set "
                        f"one; received {d.label_count} and {d.label_fraction}")
    for key in ("label_scheme", "label_count"):
        if getattr(d, key) is not None and not d.label:
            raise UserError(f"config: data.{key} is about labels: it needs data.label (single, multi or "
                            "segmentation)")
    moco = m.method.startswith("moco_")
    if m.augmentation is not None and not moco:
        raise UserError(f"config: model.augmentation is MoCo's (model.method moco_*); received it with {m.method}")
    if m.adapter_trainable and not (moco and m.adapters):
        raise UserError("config: model.adapter_trainable trains MoCo's 1x1 adapters: it needs a moco_* method and "
                        "model.adapters true")
    if d.class_balance and not d.label:
        raise UserError("config: data.class_balance evens out the classes of labels: it needs data.label "
                        "(single, multi or segmentation)")
    bands = config_bands(config)
    for modality, channels in cls.INPUT_CHANNELS.items():
        if len(bands[modality]) != channels:
            raise UserError(f"config: model.method {m.method} takes {channels} {modality} bands (e.g. "
                            f"data.{modality}_bands: rgb); received {len(bands[modality])}")
    if m.backbone in SWINS:
        try:
            check_image_size(m.backbone, d.crop_size)
        except ValueError as err:
            raise UserError(f"config: data.crop_size {d.crop_size} does not fit model.backbone {m.backbone}: "
                            f"{str(err).split('. Received')[0]}") from None
    divisor = cls.crop_divisor(m.backbone)
    if d.crop_size % divisor:
        raise UserError(f"config: data.crop_size must be a multiple of {divisor} for model.method {m.method} with "
                        f"model.backbone {m.backbone}; received {d.crop_size}")
    if issubclass(cls, DownstreamMethod):
        _check_downstream(config, cls)
    return bands


def _check_downstream(config, cls):
    m = config.model
    if m.freeze and not m.pretrained:
        raise UserError("config: model.freeze needs model.pretrained (frozen random encoders learn nothing)")
    if m.pretrained_adapters != "keep" and not m.pretrained:
        raise UserError(f"config: model.pretrained_adapters {m.pretrained_adapters} says what to do with a pre-trained "
                        "run's 1x1 adapters: it needs model.pretrained")
    if m.freeze_stages and m.pretrained_adapters == "drop":
        raise UserError("config: model.freeze_stages would keep the first convolution at its random start "
                        "(model.pretrained_adapters drop starts it random): fine-tune it, or keep the adapters")
    if m.freeze_stages and (m.backbone not in BACKBONES or m.freeze):
        raise UserError(f"config: model.freeze_stages freezes part of a ResNet that fine-tunes: it needs a ResNet "
                        f"model.backbone and model.freeze false; received {m.backbone}, freeze {str(m.freeze).lower()}")
    if m.backbone == "unet" and (m.inputs != "early_fusion" or m.pretrained):
        raise UserError("config: model.backbone unet is the supervised early-fusion baseline: "
                        "model.inputs early_fusion, no model.pretrained")


def config_value(config, key):
    """The value of a dotted config `key` (``section.name``)."""
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def _same(key, a, b):
    """Whether two values of config `key` mean the same (band lists by the bands they name)."""
    if key.endswith("_bands"):
        modality = key.split(".")[1][:2]
        try:
            return resolve_bands(modality, a) == resolve_bands(modality, b)
        except ValueError:
            return False
    return a == b


def _show(value):
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def apply_card(config, explicit=()):
    """`config` with what the card of its ``model.pretrained`` run fixes, and a line saying what that was.

    A downstream run started from pre-trained encoders takes from their card the backbone (and
    what building it needs), the normalisation, each sensor's bands, and a ``model.inputs`` whose
    encoders the card has (the config's own when they exist there: ``only_s2`` from a
    Dual-SimCLR run is fine). The config's values for these are what training from scratch uses.

    Args:
        config: a :class:`~sslrs_tf.config.Config`.
        explicit: the dotted keys the user set on the command line: a card value contradicting
            one of them is a UserError naming both.

    Returns:
        ``(config, line)``; `config` unchanged and `line` None without ``model.pretrained`` or for a
        pre-training method.
    """
    m = config.model
    if not m.pretrained or not issubclass(get_method(m.method), DownstreamMethod):
        return config, None
    folder, card = load_card(m.pretrained)
    where = folder / "card.json"
    settings = card_settings(card)
    if m.pretrained_adapters != "keep":
        if not settings["model.adapters"]:
            raise UserError(f"model.pretrained_adapters={m.pretrained_adapters} needs encoders with 1x1 adapters; "
                            f"model.pretrained {where} has none")
        settings["model.adapters"] = m.pretrained_adapters == "random"
    encoders = tuple(sorted(card.get("encoders", {})))
    if not set(INPUTS[m.inputs]) <= set(encoders):
        if "model.inputs" in explicit or encoders not in CARD_INPUTS:
            raise UserError(f"model.inputs={m.inputs} needs the encoders {', '.join(INPUTS[m.inputs])}; "
                            f"model.pretrained {where} has {', '.join(encoders) or 'none'}")
        settings["model.inputs"] = CARD_INPUTS[encoders]
    changed = {}
    for key, value in settings.items():
        mine = config_value(config, key)
        if _same(key, mine, value):
            continue
        if key in explicit:
            raise UserError(f"{key}={_show(mine)} contradicts model.pretrained {where}, whose encoders were trained "
                            f"with {key.split('.')[1]} {_show(value)}")
        changed[key] = value
    sections = {}
    for key, value in changed.items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    config = dataclasses.replace(config, **{s: dataclasses.replace(getattr(config, s), **v)
                                            for s, v in sections.items()})
    what = ", ".join(f"{k}={_show(v)}" for k, v in changed.items()) or "nothing to change"
    return config, f"model.pretrained {folder} ({card.get('method')} {card.get('backbone')}): from its card: {what}"


def data_source(config, dataset=None):
    """The :class:`~sslrs_tf.data.sources.Source` of ``data`` (the synthetic world is generated and built on
    first use); `dataset`: another of the builders' datasets than ``data.dataset`` (opened with its
    default builder config, or the synthetic world's)."""
    data = config.data
    name = dataset or data.dataset
    if data.source == "synthetic":
        if name not in WORLD:
            raise UserError(f"config: data.source synthetic has {' and '.join(WORLD)}, "
                            f"not data.dataset {name}")
        syn = data.synthetic
        params = {"patches": syn.patches, "size": syn.size, "seed": syn.seed,
                  "dfc_validation": syn.dfc_validation, "dfc_test": syn.dfc_test}
        builders = prepare_world(syn.dir, data.data_dir, params)
        # The world's SEN12MS as the real one's configs build it, each built once: all, its non-overlapping
        # subset (its patches overlap as the real ones do), or without labels.
        variants = {"all": None, "nonoverlapping": {"non_overlapping": True}, "unlabelled": {"labels": False}}
        if name == "sen12ms" and dataset is None and data.config not in variants:
            raise UserError(f"config: data.config {data.config}: the synthetic world's sen12ms is built as "
                            f"{', '.join(variants)}")
        if name == "sen12ms" and dataset is None and variants[data.config]:
            config = {**synthetic_config(syn.size), **variants[data.config]}
            return open_source(build(name, pathlib.Path(syn.dir) / name, data.data_dir,
                                     {**config, "name": f"{config['name']}_{data.config}"}))
        return open_source(builders[name])
    return open_source(name, data.data_dir, data.config if dataset is None else None)


class Experiment:
    """A run config resolved into what it names. Checks the config when made (:func:`check_config`).

    Args:
        config: a validated :class:`~sslrs_tf.config.Config`.

    Attributes:
        config: the config.
        bands: ``{"s1": (...), "s2": (...)}``, resolved band names.
        method_class: the :class:`~sslrs_tf.methods.base.Method` subclass of ``model.method``.
        modalities: the sensors the method reads (only these are decoded).
    """

    def __init__(self, config):
        self.config = config
        self.bands = check_config(config)
        self.method_class = get_method(config.model.method)
        self.modalities = self.method_class.input_modalities(config.model)

    @functools.cached_property
    def source(self):
        """The data source (opened, or generated and built, on first use)."""
        return data_source(self.config)

    @functools.cached_property
    def validation_source(self):
        """The source of ``data.validation_split``: ``data.validation_dataset``'s, else :attr:`source`."""
        other = self.config.data.validation_dataset
        return data_source(self.config, other) if other and other != self.config.data.dataset else self.source

    def source_of(self, split):
        """The source `split` is read from: :attr:`validation_source` for ``data.validation_split``."""
        return self.validation_source if split == self.config.data.validation_split else self.source

    def split_size(self, split, what):
        """Number of samples of `split`; `what` names where the split came from in an error (``config:
        data.split``, ``--split``)."""
        try:
            return self.source_of(split).num_examples(split)
        except SplitError as err:
            raise UserError(f"{what}: {err}") from None

    def training_size(self, split, what):
        """Samples one training epoch of `split` passes over (after ``data.label_fraction`` and
        ``data.class_balance``); `what` as for :meth:`split_size`."""
        d = self.config.data
        self.split_size(split, what)
        return training_size(self.source, split, label=d.label, label_fraction=d.label_fraction if d.label else 1.0,
                             class_balance=d.class_balance, label_scheme=d.label_scheme if d.label else None,
                             label_count=d.label_count if d.label else None)

    def dataset(self, split, *, training, batch_size=None, start_epoch=0, start_step=0, steps_per_epoch=None,
                with_ids=False):
        """The input pipeline of `split` as the config prepares it.

        Training: random crops, shuffled endless epochs from `start_epoch` (skipping `start_step`
        batches of it), the config's label fraction and class balance. Otherwise one deterministic pass over the whole
        split. `batch_size` defaults to ``train.batch_size``; `with_ids` adds each sample's ``id`` to the inputs.
        """
        c = self.config
        return make_dataset(self.source_of(split), split, modalities=self.modalities, bands=self.bands,
                            missing_bands=c.data.missing_bands, season_pairs=c.data.season_pairs,
                            normalization=c.data.normalization,
                            crop_size=c.data.crop_size, batch_size=batch_size or c.train.batch_size,
                            training=training, seed=c.train.seed, shuffle_buffer=c.data.shuffle_buffer,
                            start_epoch=start_epoch, start_step=start_step, label=c.data.label,
                            label_fraction=c.data.label_fraction if training else 1.0,
                            label_count=c.data.label_count if training and c.data.label else None,
                            label_scheme=c.data.label_scheme if c.data.label else None,
                            class_balance=c.data.class_balance and training,
                            steps_per_epoch=steps_per_epoch if training else None, with_ids=with_ids)

    def method_inputs(self):
        """The :class:`~sslrs_tf.methods.base.MethodInputs` the config's data gives the method."""
        d = self.config.data
        return MethodInputs(bands=self.bands, image_size=d.crop_size if self.config.model.backbone in SWINS else None,
                            label=d.label, num_classes=len(self.class_names) if d.label else NUM_CLASSES)

    @functools.cached_property
    def class_names(self):
        """The class names of the labels (``data.label_scheme`` of the dataset), in code order."""
        try:
            return self.source.label_names(self.config.data.label_scheme)
        except UserError as err:
            raise UserError(f"config: data.label_scheme: {err}") from None

    def build_method(self, sample, *, pretrained=True):
        """The config's method, with every variable created by one call on the first example of `sample`
        (a batch of the pipeline) and the encoders of ``model.pretrained`` loaded unless `pretrained`
        is False (evaluation restores all weights itself). Call it inside the strategy's scope."""
        model = self.method_class.from_model_config(self.config.model, self.method_inputs())
        if self.config.model.fused_batch_norm:
            fuse_batch_norm(model)
        if pretrained and self.config.model.pretrained:
            self._load_pretrained(model)
        inputs = sample[0] if isinstance(sample, tuple) else sample
        model({k: v[:1] for k, v in inputs.items()})
        return model

    def restored(self, weights, split, batch_size=None):
        """A finished run's model and the evaluation pipeline of `split`: the method rebuilt from the
        config and every weight loaded from `weights` (the run's ``.weights.h5``).

        Returns:
            ``(dataset, model)``; `dataset` is one deterministic pass of `batch_size` samples.

        Raises:
            UserError: the dataset has no `split` (named as ``--split``).
        """
        self.split_size(split, f"--split {split}")
        ds = self.dataset(split, training=False, batch_size=batch_size)
        model = self.build_method(next(iter(ds.take(1))), pretrained=False)  # all weights come from the run
        model.load_weights(weights)
        return ds, model

    def rebuilt(self, weights, class_names=None):
        """A finished run's model from its config alone, no data read: the method built on a blank batch of
        the config's crop and bands, every weight loaded from `weights` (the run's ``.weights.h5``).

        Args:
            class_names: the run's classes, in code order (its card's ``downstream.classes``); None: the
                data source's (opened).
        """
        import tensorflow as tf

        if class_names is not None:
            self.__dict__["class_names"] = tuple(class_names)  # what the cached property would hold
        size = self.config.data.crop_size
        blank = {m: tf.zeros([1, size, size, len(self.bands[m])]) for m in self.modalities}
        model = self.build_method(blank, pretrained=False)
        model.load_weights(weights)
        return model

    def _load_pretrained(self, model):
        m = self.config.model
        _, encoders = load_encoders(m.pretrained, tuple(model.streams), self.config.data.normalization, self.bands,
                                    m.backbone)
        try:
            model.load_encoders(encoders)
        except ValueError as err:
            raise UserError(f"model.pretrained: {err}") from None
