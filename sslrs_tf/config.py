"""Run configurations: YAML validated into typed sections, with dotted overrides.

    python train.py --config configs/dual_simclr.yaml train.epochs=5 data.source=synthetic

Every mistake is a :class:`~sslrs_tf.errors.UserError` with one line that names
the key and what it accepts: an unknown key names the closest valid one, a
wrong type or an out-of-range value says what was expected and what was received.
"""

import dataclasses
import difflib
import importlib.resources
import pathlib
import typing

import yaml

from sslrs_tf.errors import UserError

_REQUIRED = dataclasses.MISSING


def option(default=_REQUIRED, *, doc="", choices=None, min=None, above=None, max=None):  # noqa: A002
    """A config field: its default (none = required), documentation, allowed values or range."""
    meta = {"doc": doc, "choices": choices, "min": min, "above": above, "max": max}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        factory = default if callable(default) else (lambda d=default: type(d)(d))
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(kw_only=True)
class RunConfig:
    """Where the run lives."""

    dir: str = option(doc="run directory: resolved config, TensorBoard logs, checkpoints, exported encoders")


@dataclasses.dataclass(kw_only=True)
class TrainConfig:
    """The training loop."""

    epochs: int = option(min=1, doc="epochs to train")
    batch_size: int = option(min=1, doc="global batch size (all replicas together)")
    seed: int = option(0, doc="seed of weights, data order and crops")
    steps_per_epoch: typing.Optional[int] = option(None, min=1, doc="cap on steps per epoch (default: one pass over the data)")
    distribution: str = option("auto", choices=("auto", "one_device", "mirrored", "multi_worker", "tpu"),
                               doc="tf.distribute strategy")
    mixed_precision: str = option("float32", choices=("float32", "mixed_float16", "mixed_bfloat16"))
    checkpoint_every: int = option(50, min=1, doc="steps between checkpoints (also at every epoch end)")
    log_every: int = option(10, min=1, doc="steps between TensorBoard scalars")
    max_skipped: int = option(10, min=1, doc="consecutive batches with a non-finite loss before the run stops")
    validation_steps: typing.Optional[int] = option(None, min=1, doc="cap on validation steps per epoch")
    deterministic: bool = option(True, doc="deterministic TF ops, so a resumed run equals an uninterrupted one")
    jit_compile: typing.Optional[bool] = option(None, doc="XLA-compile the training step (true needs "
                                                          "deterministic: false); null: on with GPUs or TPUs when "
                                                          "not deterministic, else off")


@dataclasses.dataclass(kw_only=True)
class OptimizerConfig:
    """Optimizer and learning-rate schedule."""

    name: str = option("adam", choices=("adam", "adamw", "sgd", "lamb"))
    lr: float = option(above=0.0, doc="peak learning rate (fine-tuning: of the head)")
    encoder_lr: typing.Optional[float] = option(None, above=0.0,
                                                doc="fine-tuning: the encoders' own learning rate (default: lr)")
    weight_decay: float = option(0.0, min=0.0, doc="L2 penalty (adam, sgd) or decoupled decay (adamw, lamb)")
    momentum: float = option(0.9, min=0.0, doc="sgd momentum")
    schedule: str = option("constant", choices=("constant", "cosine", "step"))
    warmup_epochs: float = option(0.0, min=0.0, doc="linear warm-up before the cosine decay")
    decay_epochs: typing.List[int] = option([], doc="step schedule: epochs at which lr is multiplied by decay_factor")
    decay_factor: float = option(0.1, above=0.0, doc="step schedule: the multiplier")


#: the ResNet and Swin encoders of sslrs_tf.models.encoders, named here so that configs and the
#: converter check a name before TensorFlow loads (a test keeps the two lists equal)
ENCODERS = ("resnet10", "resnet18", "resnet34", "resnet50", "swin_t", "swin_micro")


@dataclasses.dataclass(kw_only=True)
class ModelConfig:
    """The method (pre-training, or a downstream model) and its encoders."""

    method: str = option("dual_simclr", choices=("dual_simclr", "mma", "moco_single", "moco_sensor", "moco_fusion",
                                                  "moco_partial_fusion", "simclr", "classifier", "segmenter"))
    backbone: str = option("resnet18", choices=(*ENCODERS, "vgg", "unet"),
                           doc="encoder architecture (swin_*: built for data.crop_size; vgg: MMA's; unet: the "
                               "segmentation baseline, early fusion only)")
    projection_dim: typing.Optional[int] = option(128, min=1, doc="projection head width; null: no head (Dual-Swin)")
    embedding_dim: int = option(256, min=1, doc="mma and downstream vgg: channels E of the VGG encoders' last block")
    temperature: float = option(0.07, above=0.0)
    queue_size: int = option(65536, min=1, doc="moco_*: keys in the queue")
    momentum: float = option(0.999, min=0.0, max=1.0, doc="moco_*: key-encoder momentum")
    adapters: bool = option(False, doc="moco_*: 1x1 conv -> BN -> ReLU adapters to 3 channels before the "
                                       "encoders; downstream: the encoders have them (set from a MoCo run's card)")
    adapter_trainable: bool = option(False, doc="moco_*: train the adapters (default: fixed at their random start, "
                                                "as in the MoCo work)")
    augmentation: typing.Optional[str] = option(None, choices=("none", "flips_blur_elastic", "set1", "set2", "set3"),
                                                doc="moco_*: the views (docs/moco.md); null: moco_single "
                                                    "flips_blur_elastic, moco_sensor none, moco_*fusion set3")
    sync_bn: bool = option(True, doc="BatchNorm statistics over the global batch")
    fused_batch_norm: bool = option(False, doc="BatchNorm through TF's fused kernel on one replica: faster, but "
                                               "one device then no longer trains like several (docs/distribution.md)")
    inputs: str = option("late_fusion", choices=("only_s1", "only_s2", "early_fusion", "late_fusion",
                                                 "fusion_only_s1", "fusion_only_s2"),
                         doc="downstream: which sensors feed which encoders (fusion_only_*: one sensor into an "
                             "S1+S2 encoder, the other's bands zero); moco_single: only_s1 or only_s2, the sensor "
                             "it reads")
    pretrained: typing.Optional[str] = option(None, doc="downstream: pre-training run (or converted) directory to "
                                                        "start from; its card sets backbone, bands, normalisation")
    freeze: bool = option(False, doc="downstream: keep the pretrained encoders fixed (linear probe)")
    pretrained_adapters: str = option("keep", choices=("keep", "random", "drop"),
                                      doc="downstream from a MoCo run with 1x1 adapters: keep them (Moco_1x1), start "
                                          "them random (Moco_1x1Rnd), or drop them and read the bands directly, the "
                                          "first convolution starting random (Moco)")
    freeze_stages: int = option(0, min=0, max=5, doc="downstream ResNets: keep the first k of the five stages fixed "
                                                     "(stem, then the four residual stages; the adapter with the "
                                                     "stem); 0: none")


@dataclasses.dataclass(kw_only=True)
class SyntheticConfig:
    """The synthetic world used when ``data.source: synthetic`` (generated once, cached)."""

    dir: str = option("data/synthetic")
    patches: int = option(400, min=1)
    size: int = option(64, min=16)
    seed: int = option(0)
    dfc_validation: int = option(100, min=1)
    dfc_test: int = option(100, min=1)


@dataclasses.dataclass(kw_only=True)
class DataConfig:
    """Which data, and how it is prepared."""

    source: str = option("tfds", choices=("tfds", "synthetic"), doc="built TFDS datasets, or the synthetic world")
    dataset: str = option("sen12ms", choices=("sen12ms", "dfc2020", "ssl4eo_s12", "paired_chips", "eurosat",
                                              "bigearthnet"),
                          doc="ssl4eo_s12: one season's S1/S2 pair per sample (data.config l1c or l2a); "
                              "paired_chips: your own S1/S2 chips, built under data.config (docs/own_data.md); "
                              "eurosat, bigearthnet: the TFDS catalog's eurosat/all, bigearthnet/all (S2 only)")
    data_dir: str = option("data/tfds", doc="TFDS data folder")
    config: str = option("all", doc="builder config (all, spring, summer, fall, winter, nonoverlapping, ...; "
                                     "paired_chips: the name its build was given); "
                                     "data.source synthetic: all, or nonoverlapping for its sen12ms")
    split: str = option("train", doc="training split; several joined by + (train+holdout: all of SEN12MS)")
    validation_split: typing.Optional[str] = option("holdout", doc="split evaluated after each epoch (null: none)")
    validation_dataset: typing.Optional[str] = option(None, choices=("sen12ms", "dfc2020"),
                                                      doc="dataset of data.validation_split (null: data.dataset); "
                                                          "pre-training watched on DFC2020's pairs: dfc2020")
    crop_size: int = option(min=8, doc="random crop in pixels, aligned across S1 and S2")
    normalization: str = option("per_sample_max", choices=("per_sample_max", "per_patch_max", "zscore", "fixed"))
    s1_bands: typing.Optional[typing.List[str]] = option(None, doc="S1 bands (default: VV, VH)")
    s2_bands: typing.Optional[typing.List[str]] = option(None, doc="S2 bands or a set name (default: all 13)")
    shuffle_buffer: int = option(512, min=1)
    label: typing.Optional[str] = option(None, choices=("single", "multi", "segmentation"),
                                         doc="downstream targets (null: pre-training, no labels)")
    label_fraction: float = option(1.0, above=0.0, max=1.0, doc="downstream: share of the training split's labels used")
    label_count: typing.Optional[int] = option(None, min=1, doc="downstream: number of the training split's labelled "
                                                                 "samples used instead (1024: the MoCo work's 1k "
                                                                 "dataset); nested with the fractions")
    label_scheme: typing.Optional[str] = option(None, choices=("dfc8", "igbp", "igbp_simple", "bigearthnet43",
                                                               "bigearthnet19"),
                                                doc="downstream: the classes (null: the dataset's own, dfc8 for "
                                                    "sen12ms and dfc2020); igbp (17), igbp_simple (10): SEN12MS "
                                                    "scene classification; bigearthnet19: its official 19 classes")
    class_balance: bool = option(False, doc="downstream: repeat each class's training samples to even out the "
                                            "classes (the research code's default for fine-tuning)")
    missing_bands: str = option("error", choices=("error", "zeros"),
                                doc="a band the dataset lacks (B10 on bigearthnet): refuse, or feed zeros after normalisation")
    season_pairs: str = option("same", choices=("same", "any"),
                               doc="ssl4eo_s12 (a location's seasons per example), training: S1 and S2 of one "
                                   "random season, or any two (seasonal change inside a positive pair)")
    test_split: str = option("test", doc="split evaluate.py reports on")
    service: typing.Optional[str] = option(None, doc="grpc://HOST:PORT of a tf.data service dispatcher whose workers "
                                                     "make the training input (python -m sslrs_tf.data.service; "
                                                     "docs/distribution.md); null: this process makes it")
    synthetic: SyntheticConfig = option(SyntheticConfig)


@dataclasses.dataclass(kw_only=True)
class Config:
    """A whole run."""

    run: RunConfig = option(doc="")
    train: TrainConfig = option(doc="")
    optimizer: OptimizerConfig = option(doc="")
    model: ModelConfig = option(ModelConfig)
    data: DataConfig = option(doc="")

    def to_dict(self):
        """Plain dictionary (for YAML and run directories)."""
        return dataclasses.asdict(self)


def _describe(tp):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin in (list, typing.List):
        return f"a list of {_describe(args[0])}s"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, tp.__name__)


def _coerce(value, tp, key):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin in (list, typing.List):
        if isinstance(value, str):  # a band-set name where a list of bands is allowed
            return value
        if not isinstance(value, list):
            raise UserError(f"config: {key} must be {_describe(tp)} or a name; received {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config: {key} must be a section (a mapping); received {value!r}")
        return from_dict(tp, value, key)
    if tp is float and isinstance(value, str):
        # PyYAML (YAML 1.1) reads `3e-5` without a dot as a string: accept any float literal.
        try:
            value = float(value)
        except ValueError:
            pass
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[tp]
    if not ok:
        raise UserError(f"config: {key} must be {_describe(tp)}; received {value!r}")
    return float(value) if tp is float else value


def _check_range(value, meta, key):
    if value is None:
        return
    if meta["choices"] and value not in meta["choices"]:
        close = difflib.get_close_matches(str(value), meta["choices"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"config: {key} must be one of {', '.join(meta['choices'])}; received {value!r}{hint}")
    if meta["min"] is not None and value < meta["min"]:
        raise UserError(f"config: {key} must be >= {meta['min']}; received {value!r}")
    if meta["above"] is not None and value <= meta["above"]:
        raise UserError(f"config: {key} must be > {meta['above']}; received {value!r}")
    if meta["max"] is not None and value > meta["max"]:
        raise UserError(f"config: {key} must be <= {meta['max']}; received {value!r}")


def from_dict(cls, data, prefix=""):
    """Validates a mapping into the dataclass `cls` (keys reported under `prefix`)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            full = f"{prefix}.{key}" if prefix else key
            close = difflib.get_close_matches(key, list(fields), n=1)
            known = ", ".join(f"{prefix}.{k}" if prefix else k for k in fields)
            hint = f"did you mean {prefix + '.' if prefix else ''}{close[0]}?" if close else f"valid keys: {known}"
            raise UserError(f"config: unknown key {full}; {hint}")
    values = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            values[name] = _coerce(data[name], hints[name], key)
        elif f.default is _REQUIRED and f.default_factory is _REQUIRED:
            if dataclasses.is_dataclass(hints[name]):
                values[name] = from_dict(hints[name], {}, key)
                continue
            raise UserError(f"config: {key} is required ({_describe(hints[name])}{': ' + f.metadata['doc'] if f.metadata.get('doc') else ''})")
        else:
            continue
        _check_range(values[name], f.metadata, key)
    return cls(**values)


def parse_override(text):
    """``"train.epochs=5"`` -> ``(["train", "epochs"], 5)``; the value is read as YAML."""
    if "=" not in text:
        raise UserError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


#: what find_config looks for: the shipped files of that kind, and how an error names it
KINDS = {"config": "config file", "protocol": "protocol file"}


def shipped_configs(kind="config"):
    """``{name: path}`` of the shipped run configs (`kind` ``"config"``) or protocol files (``"protocol"``):
    the repository's ``configs/``, installed as the package ``sslrs_tf.configs``."""
    try:
        folder = pathlib.Path(str(importlib.resources.files("sslrs_tf.configs")))
    except ModuleNotFoundError:
        # A clone used without installing it: sslrs_tf.configs exists only as an install maps it.
        folder = pathlib.Path(__file__).resolve().parents[1] / "configs"
    files = sorted(folder.glob("*.yaml"))
    return {p.stem: p for p in files if p.stem.startswith("protocol_") == (kind == "protocol")}


def find_config(path, kind="config"):
    """The file `path` names: the file itself when it exists, else the shipped one of that name.

    ``dual_simclr.yaml`` and ``dual_simclr`` both name ``configs/dual_simclr.yaml`` when no such file
    is in the working folder; `kind` ``"protocol"`` looks among the shipped protocol files. A name
    that is neither is a UserError listing the shipped ones.
    """
    path = pathlib.Path(path)
    if path.is_file():
        return path
    if path.parent != pathlib.Path("."):
        raise UserError(f"{KINDS[kind]} {path}: no such file")
    shipped = shipped_configs(kind)
    name = path.name.removesuffix(".yaml")
    if name not in shipped:
        raise UserError(f"{KINDS[kind]} {path}: no such file here, and no shipped {kind} {name!r}; shipped "
                        f"{kind}s: {', '.join(shipped)}")
    return shipped[name]


def _read_with_base(path, seen):
    """The mapping of a YAML config file; a ``base: FILE`` key (relative to it) is read first and merged under it."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as err:
        raise UserError(f"config file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UserError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict) or "base" not in data:
        return data
    base = path.parent / str(data.pop("base"))
    if base.resolve() in seen:
        raise UserError(f"config file {path}: base {base} includes itself")
    return _merge(_read_with_base(base, (*seen, path.resolve())), data)


def _merge(base, over):
    """`over` on top of `base`, section by section (a value in `over`, null included, wins)."""
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in over.items():
        out[key] = _merge(out.get(key), value) if isinstance(value, dict) else value
    return out


def load_config(path=None, overrides=(), data=None):
    """Reads a YAML config (or takes `data`), applies dotted `overrides`, validates it.

    `path` is a file, or the name of a shipped config (see :func:`find_config`). A file may start
    from another: ``base: other.yaml`` (relative to the file) is read
    first and the file's own sections are merged over it key by key.

    Returns:
        A :class:`Config`.
    """
    if data is None:
        path = find_config(path)
        data = _read_with_base(path, ())
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of sections (run, train, optimizer, model, data)")
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise UserError(f"override {text!r}: {k} is not a section")
        node[keys[-1]] = value
    config = from_dict(Config, data)
    d = config.data
    # Before anything is generated or built: the world's patches are data.synthetic.size px.
    if d.source == "synthetic" and d.crop_size > d.synthetic.size:
        raise UserError(f"data.crop_size {d.crop_size} is larger than the synthetic world's {d.synthetic.size} px "
                        "patches (data.synthetic.size)")
    return config


def dump_config(config):
    """The config as YAML text."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
