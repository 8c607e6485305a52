"""The ISPRS 2022 comparison: pretrained (frozen, fine-tuned) against the supervised baselines,
at several label fractions and seeds, reported as the paper's tables and a label-fraction plot.

    python evaluate.py --protocol configs/protocol_isprs.yaml [key=value ...]

Every (label, model, fraction, seed) is an ordinary downstream run in
``DIR/<label>/<model>/f<fraction>/seed<seed>``, trained with the protocol's base
config plus the model's overrides, then evaluated. A run whose ``metrics.json``
exists is not trained again, and an interrupted run resumes from its checkpoint:
an interrupted protocol continues where it stopped.

A ``grid`` over pre-training settings (the MoCo work's batch size x epochs study) makes
one pre-training run of ``grid_method`` per combination, in ``DIR/pretraining/<method>/<point>``,
and compares each of that method's models once per run (rows ``<model> [<point>]``).
"""

import dataclasses
import itertools
import json
import pathlib
import re
import typing

import numpy as np
import yaml

from sslrs_tf.config import find_config, from_dict, option, parse_override, shipped_configs
from sslrs_tf.data.labels import CLASS_NAMES
from sslrs_tf.errors import UserError

#: pre-training methods whose runs a protocol names (``pretrained.<method>``); Dual-Swin is dual_simclr
#: with Swin encoders
PRETRAINING = ("dual_simclr", "mma", "simclr", "moco_sensor", "moco_fusion", "moco_partial_fusion")


@dataclasses.dataclass(frozen=True)
class Model:
    """One row of the comparison tables.

    Args:
        family: ``"probe"`` (frozen pre-trained encoders), ``"finetune"`` (pre-trained, fine-tuned)
            or ``"baseline"`` (supervised, from random weights); the protocol's overrides of that
            name apply.
        pretrained: the pre-training method (a key of ``pretrained:``) whose run starts the encoders.
        overrides: the row's own config overrides (the encoders' architecture otherwise comes from
            the base config, or from the pre-trained run's card).
        members: family ``"ensemble"``: the rows whose runs' class probabilities are averaged
            (:mod:`sslrs_tf.evaluation.ensemble`); nothing is trained for it.
    """

    family: str
    pretrained: str = None
    overrides: tuple = ()
    members: tuple = ()


def _pretrained(method, *overrides, freeze=False):
    return Model("probe" if freeze else "finetune", method,
                 (f"model.freeze={str(freeze).lower()}", *overrides))


_SCRATCH = ("model.pretrained=null", "model.freeze=false")
#: the models of the ISPRS 2022 and CVPR EarthVision 2022 tables. The baselines' encoders come from the
#: base config (model.backbone): the baselines of a Swin base config are the Swin baselines; "Dual-Swin"
#: names the pretrained rows of such a comparison.
MODELS = {
    "Dual-SimCLR frozen": _pretrained("dual_simclr", "model.inputs=late_fusion", freeze=True),
    "Dual-SimCLR fine-tuned": _pretrained("dual_simclr", "model.inputs=late_fusion"),
    "Dual-Swin frozen": _pretrained("dual_simclr", "model.inputs=late_fusion", freeze=True),
    "Dual-Swin fine-tuned": _pretrained("dual_simclr", "model.inputs=late_fusion"),
    "MMA": _pretrained("mma", "model.inputs=late_fusion"),
    "SimCLR (RGB)": _pretrained("simclr", "model.inputs=only_s2"),
    "MoCo-v2 sensor pairs": _pretrained("moco_sensor", "model.inputs=late_fusion"),
    "MoCo-v2 fusion": _pretrained("moco_fusion", "model.inputs=early_fusion"),
    "OnlySen-1": Model("baseline", None, (*_SCRATCH, "model.inputs=only_s1")),
    "OnlySen-2": Model("baseline", None, (*_SCRATCH, "model.inputs=only_s2")),
    "EarlyFusion": Model("baseline", None, (*_SCRATCH, "model.inputs=early_fusion")),
    "LateFusion": Model("baseline", None, (*_SCRATCH, "model.inputs=late_fusion")),
    "UNet": Model("baseline", None, (*_SCRATCH, "model.backbone=unet", "model.inputs=early_fusion")),
    # The CVPR EarthVision 2022 segmentation rows, with a Swin segmenter base config (SwinUNet heads).
    "SwinUNet": Model("baseline", None, (*_SCRATCH, "model.inputs=late_fusion")),
    "SwinUNet fine-tuned": _pretrained("dual_simclr", "model.inputs=late_fusion"),
    "SwinUNet frozen": _pretrained("dual_simclr", "model.inputs=late_fusion", freeze=True),
    "Ensemble UNet + SwinUNet fine-tuned": Model("ensemble", members=("UNet", "SwinUNet fine-tuned")),
}
#: the SEN12MS MoCo work's scene-classification rows, one per input (its tables' columns s1, s2, s1/s2): the
#: supervised ResNet on all the labels and on its "1k dataset", MoCo's sensor-based pairs (S1: the key encoder,
#: S2: the query encoder, S1/S2: both, late fusion) and its fusion runs (their stacked encoder; on one sensor with
#: the other's bands zero)
MOCO_INPUTS = {"s1": "only_s1", "s2": "only_s2", "s1/s2": "early_fusion"}
for _tag, _inputs in MOCO_INPUTS.items():
    MODELS[f"Supervised (full) {_tag}"] = Model("baseline", None, (*_SCRATCH, f"model.inputs={_inputs}"))
    MODELS[f"Supervised (1024) {_tag}"] = Model("baseline", None, (*_SCRATCH, f"model.inputs={_inputs}",
                                                                   "data.label_count=1024"))
    MODELS[f"MoCo sensor-based {_tag}"] = _pretrained(
        "moco_sensor", f"model.inputs={'late_fusion' if _tag == 's1/s2' else _inputs}")
    _fused = "early_fusion" if _tag == "s1/s2" else f"fusion_{_inputs}"
    MODELS[f"MoCo all fusion {_tag}"] = _pretrained("moco_fusion", f"model.inputs={_fused}")
    MODELS[f"MoCo partial fusion {_tag}"] = _pretrained("moco_partial_fusion", f"model.inputs={_fused}")
#: the seven systems of the ISPRS 2022 tables, and Dual-SimCLR frozen (the linear probe) as an extra row
ISPRS_MODELS = ["OnlySen-1", "OnlySen-2", "EarlyFusion", "LateFusion", "SimCLR (RGB)", "MMA",
                "Dual-SimCLR fine-tuned", "Dual-SimCLR frozen"]
HEADLINE = {"single": ("AA", "OA"), "multi": ("F1", "O-F1"), "segmentation": ("AA", "mIoU")}
PER_CLASS = {"single": "accuracy", "multi": "F1", "segmentation": "IoU"}


@dataclasses.dataclass(kw_only=True)
class PretrainedRuns:
    """``pretrained:`` of a protocol file: one run directory per pre-training method its models use."""

    dual_simclr: typing.Optional[str] = option(None, doc="Dual-SimCLR or Dual-Swin run (configs/dual_simclr.yaml, "
                                                         "dual_swin.yaml), or a converted checkpoint")
    mma: typing.Optional[str] = option(None, doc="MMA run (configs/mma.yaml)")
    simclr: typing.Optional[str] = option(None, doc="SimCLR (RGB) run (configs/simclr_rgb.yaml)")
    moco_sensor: typing.Optional[str] = option(None, doc="MoCo-v2 sensor-pairs run (configs/moco_sensor.yaml)")
    moco_fusion: typing.Optional[str] = option(None, doc="MoCo-v2 all-fusion run (configs/moco_fusion.yaml)")
    moco_partial_fusion: typing.Optional[str] = option(None, doc="MoCo-v2 partial-fusion run "
                                                                 "(configs/moco_partial_fusion.yaml)")


@dataclasses.dataclass(kw_only=True)
class ProtocolConfig:
    """A protocol file (see ``configs/protocol_isprs.yaml``)."""

    dir: str = option(doc="where the runs, tables and plot go")
    base: str = option(doc="downstream config every run starts from (relative to the protocol file, or the "
                           "name of a shipped config)")
    pretrained: PretrainedRuns = option(PretrainedRuns, doc="pre-training run per method (a bare path: dual_simclr)")
    models: typing.List[str] = option(list(ISPRS_MODELS), doc="models to compare (names in the papers' tables)")
    labels: typing.List[str] = option(["single", "multi"], doc="single, multi, segmentation (needs a segmenter base)")
    label_fractions: typing.List[float] = option([0.01, 0.1, 0.5, 1.0])
    seeds: typing.List[int] = option([0, 1, 2])
    overrides: typing.List[str] = option([], doc="applied to every run (e.g. data.source=synthetic)")
    probe: typing.List[str] = option([], doc="overrides of the frozen (linear-probe) runs")
    finetune: typing.List[str] = option([], doc="overrides of the fine-tuned runs")
    baseline: typing.List[str] = option([], doc="overrides of the supervised baselines")
    figure: typing.List[str] = option([], doc="segmentation: models whose predictions qualitative.png shows "
                                              "(largest label fraction, first seed)")
    figure_patches: int = option(6, min=1, doc="test patches (rows) of qualitative.png")
    grid: typing.List[str] = option([], doc="pre-training settings to vary, each KEY=[values] (e.g. "
                                            "train.batch_size=[32, 64, 256]): every combination is a pre-training "
                                            "run of grid_method the protocol makes, each compared in its own rows")
    grid_method: typing.Optional[str] = option(None, choices=PRETRAINING,
                                               doc="the pre-training method the grid varies (its shipped config)")
    grid_overrides: typing.List[str] = option([], doc="overrides of every grid pre-training run (e.g. "
                                                      "data.config=nonoverlapping)")


def load_protocol(path, overrides=(), check_pretrained=True):
    """Reads and validates a protocol file (a path, or the name of a shipped one); `overrides` are
    ``key=value`` on its keys (``pretrained.mma=runs/mma``; ``pretrained=RUN`` names the Dual-SimCLR run).
    `check_pretrained`: refuse a model whose pre-training run is not named (``--smoke`` makes them)."""
    path = find_config(path, kind="protocol")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise UserError(f"protocol file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise UserError(f"protocol file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"protocol file {path} must hold a mapping (dir, base, models, ...)")
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                node[key] = {"dual_simclr": node[key]} if key == "pretrained" and node.get(key) else {}
            node = node[key]
        node[keys[-1]] = value
    if isinstance(data.get("pretrained"), str):
        data["pretrained"] = {"dual_simclr": data["pretrained"]}
    protocol = from_dict(ProtocolConfig, data, "protocol")
    for name in protocol.models:
        if name not in MODELS:
            raise UserError(f"protocol: unknown model {name!r}; expected some of {', '.join(MODELS)}")
    for label in protocol.labels:
        if label not in HEADLINE:
            raise UserError(f"protocol: labels must be some of single, multi, segmentation; received {label!r}")
    for f in protocol.label_fractions:
        if not 0 < f <= 1:
            raise UserError(f"protocol: label_fractions must be in (0, 1]; received {f}")
    counted = [name for name in protocol.models if any(o.startswith("data.label_count=") for o in MODELS[name].overrides)]
    if counted and min(protocol.label_fractions) < 1:
        raise UserError(f"protocol: the model {counted[0]!r} trains on a count of labelled patches, not a fraction: "
                        f"label_fractions must be [1.0] with it; received {protocol.label_fractions}")
    for i, name in enumerate(protocol.models):
        missing = [m for m in MODELS[name].members if m not in protocol.models[:i]]
        if missing:
            raise UserError(f"protocol: the model {name!r} averages {' and '.join(MODELS[name].members)}: list "
                            f"{' and '.join(missing)} before it in models")
    for name in protocol.figure:
        if name not in protocol.models:
            raise UserError(f"protocol: figure shows models of the protocol; {name!r} is not in models")
    if protocol.figure and "segmentation" not in protocol.labels:
        raise UserError("protocol: figure draws land-cover maps: it needs labels [segmentation]")
    check_grid(protocol)
    for name in protocol.models:
        method = MODELS[name].pretrained
        if method and method == protocol.grid_method:
            continue  # the grid makes its runs
        if check_pretrained and method and not getattr(protocol.pretrained, method):
            raise UserError(f"protocol: pretrained.{method} is required for the model {name!r} "
                            f"(a {method} pre-training run directory)")
    # `base` is relative to the protocol file; a bare name that is no file there is a shipped config.
    base = path.resolve().parent / protocol.base
    shipped = shipped_configs()
    if not base.is_file() and protocol.base.removesuffix(".yaml") in shipped:
        base = shipped[protocol.base.removesuffix(".yaml")]
    return dataclasses.replace(protocol, base=str(base))


def grid_points(protocol):
    """``[(override, ...), ...]``: every combination of the protocol's ``grid`` values, in order."""
    axes = []
    for text in protocol.grid:
        keys, values = parse_override(text)
        key = ".".join(keys)
        if not isinstance(values, list) or not values:
            raise UserError(f"protocol: grid entries are KEY=[values]; received {text!r}")
        axes.append([f"{key}={value}" for value in values])
    return list(itertools.product(*axes)) if axes else []


def point_name(point):
    """A grid point in words: ``("train.batch_size=32", "train.epochs=100")`` -> ``"batch_size 32, epochs 100"``."""
    return ", ".join(o.split("=", 1)[0].split(".")[-1] + " " + o.split("=", 1)[1] for o in point)


def _slug(text):
    return re.sub(r"[^a-z0-9_]", "", text.lower().replace(" ", "_").replace("-", ""))


def grid_run_dir(protocol, point):
    """Where the grid's pre-training run of `point` lives."""
    return pathlib.Path(protocol.dir) / "pretraining" / protocol.grid_method / _slug(point_name(point))


def grid_config(protocol, point):
    """The config of the grid's pre-training run of `point`: the method's shipped config, the point, then
    ``grid_overrides``."""
    from sslrs_tf.config import load_config

    config_name = SMOKE_PRETRAINING[protocol.grid_method][0]
    return load_config(config_name, [*point, *protocol.grid_overrides, f"run.dir={grid_run_dir(protocol, point)}"])


def check_grid(protocol):
    """One-line errors for a grid that cannot run, before anything trains (each point's config is validated)."""
    if not protocol.grid:
        return
    if isinstance(protocol.grid, str):  # YAML could not read it as a list: the inner brackets were not quoted
        raise UserError(f'protocol: grid must be a list of quoted KEY=[values]: grid=["train.batch_size=[32, 64]"]; '
                        f"received {protocol.grid!r}")
    if not protocol.grid_method:
        raise UserError("protocol: grid varies the pre-training of grid_method: set grid_method "
                        f"({', '.join(PRETRAINING)})")
    if getattr(protocol.pretrained, protocol.grid_method):
        raise UserError(f"protocol: pretrained.{protocol.grid_method} and the grid both name its runs: set one")
    if not any(MODELS[m].pretrained == protocol.grid_method for m in protocol.models):
        raise UserError(f"protocol: no model of models starts from {protocol.grid_method}: the grid would compare "
                        "nothing")
    for name in protocol.models:
        if any(MODELS[m].pretrained == protocol.grid_method for m in MODELS[name].members):
            raise UserError(f"protocol: the ensemble {name!r} cannot average rows of the grid")
    varied = {parse_override(t)[0][-1] for t in protocol.grid}
    for text in protocol.grid_overrides:
        if parse_override(text)[0][-1] in varied:
            raise UserError(f"protocol: grid_overrides sets {text.split('=')[0]}, which the grid varies")
    for point in grid_points(protocol):
        grid_config(protocol, point)  # a UserError names a key or value the config refuses


def protocol_rows(protocol):
    """``[(row name, model, grid point or None), ...]``: the protocol's models, those of ``grid_method`` once per
    grid point (``"<model> [<point>]"``)."""
    rows = []
    for model in protocol.models:
        if protocol.grid and MODELS[model].pretrained == protocol.grid_method:
            rows += [(f"{model} [{point_name(p)}]", model, p) for p in grid_points(protocol)]
        else:
            rows.append((model, model, None))
    return rows


def make_grid_runs(protocol, train, log=print):
    """Trains the grid's pre-training runs that have no card yet (an interrupted one resumes)."""
    for i, point in enumerate(grid_points(protocol), 1):
        where = grid_run_dir(protocol, point)
        what = f"[pre-training {i}/{len(grid_points(protocol))}] {protocol.grid_method}, {point_name(point)}"
        if _has_card(where):
            log(f"{what}: done before")
            continue
        log(f"{what}: training in {where}")
        train(grid_config(protocol, point), verbose=0)


#: the synthetic world of ``--smoke`` (small: every run reads all of its test split)
SMOKE_WORLD = {"patches": 64, "size": 32, "seed": 0, "dfc_validation": 32, "dfc_test": 16}
#: every run of ``--smoke``: one epoch (of the small world) on 32 px crops; pre-training runs: two steps
SMOKE_RUN = ("train.epochs=1", "train.batch_size=8", "data.crop_size=32", "data.validation_split=null",
             "train.checkpoint_every=100")
#: the shipped config that pre-trains each method, and what makes it small
SMOKE_PRETRAINING = {
    "dual_simclr": ("dual_simclr.yaml", ()),
    "mma": ("mma.yaml", ("model.embedding_dim=32",)),
    "simclr": ("simclr_rgb.yaml", ()),
    "moco_sensor": ("moco_sensor.yaml", ("model.queue_size=64",)),
    "moco_fusion": ("moco_fusion.yaml", ("model.queue_size=64",)),
    "moco_partial_fusion": ("moco_partial_fusion.yaml", ("model.queue_size=64",)),
}


def _has_card(path):
    from sslrs_tf.models.pretrained import load_card

    try:
        load_card(path)
    except UserError:
        return False
    return True


def narrow_backbone(backbone):
    """The narrow test encoder of `backbone`'s family (ResNet-10, Swin-micro); VGG and UNet as they are."""
    if backbone.startswith("resnet"):
        return "resnet10"
    if backbone.startswith("swin"):
        return "swin_micro"
    return backbone


def smoke_protocol(protocol, train, log=print):
    """`protocol` in miniature on a small synthetic world, for checking it before a long job (``--smoke``).

    Same models, labels, label fractions, tables and figure; one seed; every run one short epoch
    on 32 px crops with the narrow encoder of its family; in ``DIR_smoke``. A pre-training run the
    protocol names that has no card (not made yet) is made on the fly, briefly, from the method's
    shipped config (``DIR_smoke/pretrained/<method>``); one that exists is used as it is.

    Args:
        train: what trains a run's config (:func:`sslrs_tf.training.run.train`).

    Returns:
        The miniature protocol (a :class:`ProtocolConfig`).
    """
    from sslrs_tf.config import load_config
    from sslrs_tf.datasets import prepare_world

    folder = pathlib.Path(f"{str(protocol.dir).rstrip('/')}_smoke")
    world = folder / "world"
    prepare_world(world / "synthetic", world / "tfds", SMOKE_WORLD)
    data = ["data.source=synthetic", f"data.synthetic.dir={world / 'synthetic'}", f"data.data_dir={world / 'tfds'}",
            *(f"data.synthetic.{k}={v}" for k, v in SMOKE_WORLD.items())]
    backbone = narrow_backbone(load_config(protocol.base, protocol.overrides).model.backbone)
    pretrained = {}
    for method in dict.fromkeys(MODELS[m].pretrained for m in protocol.models if MODELS[m].pretrained):
        if method == protocol.grid_method:
            continue  # the grid's runs are made by run_protocol, small (grid_overrides below)
        given = getattr(protocol.pretrained, method)
        if given and _has_card(given):
            pretrained[method] = given
            continue
        config_name, small = SMOKE_PRETRAINING[method]
        if method == "dual_simclr" and backbone.startswith("swin"):
            config_name = "dual_swin.yaml"
        where = folder / "pretrained" / method
        log(f"smoke: pre-training {method} ({config_name}, briefly) in {where}")
        pre_backbone = "vgg" if method == "mma" else backbone
        train(load_config(config_name, [*data, *SMOKE_RUN, "train.steps_per_epoch=2", f"run.dir={where}",
                                        f"model.backbone={pre_backbone}", *small]), verbose=0)
        pretrained[method] = str(where)
    grid = []
    if protocol.grid:
        # Every point in miniature (its own run, the smoke's size: grid_overrides come after the point's values).
        small = SMOKE_PRETRAINING[protocol.grid_method][1]
        pre_backbone = "vgg" if protocol.grid_method == "mma" else backbone
        grid = [*protocol.grid_overrides, *data, *SMOKE_RUN, "train.steps_per_epoch=2", f"model.backbone={pre_backbone}",
                *small]
    return dataclasses.replace(
        protocol, dir=str(folder), seeds=protocol.seeds[:1], pretrained=PretrainedRuns(**pretrained),
        overrides=[*protocol.overrides, *data, *SMOKE_RUN, f"model.backbone={backbone}"],
        grid_overrides=grid or protocol.grid_overrides)


def run_dir(protocol, label, model, fraction, seed, point=None):
    """Where one run of the protocol lives (`point`: of a grid row)."""
    slug = _slug(model)
    if point:
        slug = f"{slug}__{_slug(point_name(point))}"
    return pathlib.Path(protocol.dir) / label / slug / f"f{fraction:g}" / f"seed{seed}"


def run_config(protocol, label, model, fraction, seed, point=None):
    """The config of one run: base config, protocol overrides, the model's overrides (`point`: a grid row's,
    started from that point's pre-training run)."""
    from sslrs_tf.config import load_config

    row = MODELS[model]
    pretrained = grid_run_dir(protocol, point) if point else (row.pretrained and getattr(protocol.pretrained,
                                                                                        row.pretrained))
    start = [f"model.pretrained={pathlib.Path(pretrained).resolve()}"] if row.pretrained else []
    overrides = [*protocol.overrides, *start, *row.overrides,
                 *getattr(protocol, row.family), f"run.dir={run_dir(protocol, label, model, fraction, seed, point)}",
                 f"train.seed={seed}", f"data.label={label}", f"data.label_fraction={fraction}"]
    return load_config(protocol.base, overrides)


def run_protocol(protocol, train, log=print):
    """Trains and evaluates every run that has no ``metrics.json`` yet; returns all results.

    Args:
        train: what trains one run's config: :func:`sslrs_tf.training.run.train` (passed in by the
            caller, so that evaluation does not depend on the training driver).
        log: where the progress lines go.
    """
    import keras

    from sslrs_tf.evaluation.ensemble import evaluate_ensemble
    from sslrs_tf.evaluation.evaluate import evaluate_run

    results = []
    make_grid_runs(protocol, train, log)
    grid = [(label, row, fraction, seed) for label in protocol.labels for row in protocol_rows(protocol)
            for fraction in protocol.label_fractions for seed in protocol.seeds]
    for i, (label, (name, model, point), fraction, seed) in enumerate(grid, 1):
        where = run_dir(protocol, label, model, fraction, seed, point)
        metrics = where / "metrics.json"
        what = f"[{i}/{len(grid)}] {label}-label, {name}, {fraction:g} of the labels, seed {seed}"
        if metrics.is_file():
            log(f"{what}: done before")
        elif MODELS[model].family == "ensemble":
            log(f"{what}: averaging its members' probabilities")
            evaluate_ensemble([run_dir(protocol, label, m, fraction, seed) for m in MODELS[model].members], out=where)
            keras.backend.clear_session()
        else:
            log(f"{what}: training")
            train(run_config(protocol, label, model, fraction, seed, point), verbose=0)
            evaluate_run(where)
            keras.backend.clear_session()  # each run builds new models: free the old graphs
        results.append({"label": label, "model": name, "row": model, "fraction": fraction, "seed": seed,
                        **({"pretraining": dict(o.split("=", 1) for o in point)} if point else {}),
                        **json.loads(metrics.read_text())})
    return results


def mean_std(values):
    """``"m ± s"`` (population std over seeds, as NumPy's default), or ``"m"`` for one value; "–" for none."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def tables(results, class_names=None):
    """The paper-style markdown tables: per label kind and fraction, per-class scores and the headline
    scores (mean ± std over seeds); and per label kind, the headline average score against the fraction.
    `class_names`: the per-class columns (default: the classes the runs report, e.g. the 8 of DFC2020)."""
    out = []
    for label in dict.fromkeys(r["label"] for r in results):
        of_label = [r for r in results if r["label"] == label]
        names = class_names or list(of_label[0].get("per_class") or CLASS_NAMES)
        per_class, (average, overall) = PER_CLASS[label], HEADLINE[label]
        models = list(dict.fromkeys(r["model"] for r in of_label))
        fractions = sorted({r["fraction"] for r in of_label})
        for fraction in fractions:
            out += [f"### {label}-label, {fraction:g} of the labels: per-class {per_class}, {average}, {overall} "
                    "(%, mean ± std over seeds)", "",
                    f"| model | {' | '.join(names)} | {average} | {overall} |",
                    "|---" * (len(names) + 3) + "|"]
            for model in models:
                runs = [r for r in of_label if r["model"] == model and r["fraction"] == fraction]
                if not runs:
                    continue
                cells = [mean_std([r["per_class"][c][per_class] for r in runs]) for c in names]
                cells += [mean_std([r["scores"][k] for r in runs]) for k in (average, overall)]
                out.append(f"| {model} | {' | '.join(cells)} |")
            out.append("")
        out += [f"### {label}-label: {average} against the label fraction (%, mean ± std over seeds)", "",
                f"| model | {' | '.join(f'{f:g}' for f in fractions)} |", "|---" * (len(fractions) + 1) + "|"]
        for model in models:
            cells = [mean_std([r["scores"][average] for r in of_label if r["model"] == model and r["fraction"] == f])
                     for f in fractions]
            out.append(f"| {model} | {' | '.join(cells)} |")
        out.append("")
    return "\n".join(out)


def family(results, name):
    """The :class:`Model` family of the row `name` of `results` (a grid row's is its model's)."""
    row = next((r.get("row", r["model"]) for r in results if r["model"] == name), name)
    return MODELS[row].family


def headline(results):
    """Whether the pretrained models at 10 % of the labels beat every baseline at 100 % (the paper's claim),
    in words, per label kind; empty where the protocol lacks the runs to say."""
    lines = []
    for label in dict.fromkeys(r["label"] for r in results):
        key = HEADLINE[label][0]

        def score(model, fraction):
            values = [r["scores"][key] for r in results
                      if r["label"] == label and r["model"] == model and r["fraction"] == fraction]
            return float(np.mean(values)) if values else None

        models = dict.fromkeys(r["model"] for r in results if r["label"] == label)
        # An ensemble mixes pre-trained and supervised members: it makes no claim either way.
        pretrained = {m: score(m, 0.1) for m in models if family(results, m) in ("probe", "finetune")}
        baselines = {m: score(m, 1.0) for m in models if family(results, m) == "baseline"}
        pretrained = {m: v for m, v in pretrained.items() if v is not None}
        baselines = {m: v for m, v in baselines.items() if v is not None}
        if not pretrained or not baselines:
            continue
        best_p = max(pretrained, key=pretrained.get)
        best_b = max(baselines, key=baselines.get)
        verdict = "beats" if pretrained[best_p] > baselines[best_b] else "does NOT beat"
        lines.append(f"{label}-label: {best_p} with 10 % of the labels ({key} {pretrained[best_p]:.1f}) {verdict} "
                     f"the best supervised baseline with 100 % ({best_b}, {key} {baselines[best_b]:.1f}).")
    return "\n".join(lines)


def plot(results, path):
    """The label-fraction plot (headline average score against the fraction, one line per model) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    labels = list(dict.fromkeys(r["label"] for r in results))
    fig, axes = plt.subplots(1, len(labels), figsize=(5.5 * len(labels), 4), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        key = HEADLINE[label][0]
        of_label = [r for r in results if r["label"] == label]
        for model in dict.fromkeys(r["model"] for r in of_label):
            fractions = sorted({r["fraction"] for r in of_label if r["model"] == model})
            values = [[r["scores"][key] for r in of_label if r["model"] == model and r["fraction"] == f]
                      for f in fractions]
            ax.errorbar([100 * f for f in fractions], [np.mean(v) for v in values], yerr=[np.std(v) for v in values],
                        marker="o", capsize=3, label=model,
                        linestyle={"baseline": "--", "ensemble": ":"}.get(family(results, model), "-"))
        ax.set_xscale("log")
        ax.set_xlabel("labelled patches used (%)")
        ax.set_ylabel(f"{key} (%)")
        ax.set_title(f"{label}-label")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if any(r.get("synthetic") for r in results):
        fig.suptitle("SYNTHETIC data", color="red")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_protocol_figure(protocol):
    """Writes ``qualitative.png`` (:func:`sslrs_tf.evaluation.ensemble.qualitative`): the predictions of the
    protocol's ``figure`` models at its largest label fraction and first seed; returns its path, or None
    when the protocol has no figure."""
    if not protocol.figure:
        return None
    from sslrs_tf.evaluation.ensemble import qualitative

    fraction, seed = max(protocol.label_fractions), protocol.seeds[0]
    panels = {name: [run_dir(protocol, "segmentation", m, fraction, seed) for m in (MODELS[name].members or [name])]
              for name in protocol.figure}
    path = pathlib.Path(protocol.dir) / "qualitative.png"
    qualitative(panels, path, protocol.figure_patches)
    return path


def report_protocol(protocol, results):
    """Writes ``results.json``, ``tables.md``, ``label_fractions.png`` and (with ``figure``) ``qualitative.png``
    into the protocol directory; returns the text of the tables (with the headline sentence)."""
    folder = pathlib.Path(protocol.dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    synthetic = any(r.get("synthetic") for r in results)
    text = "\n".join(filter(None, ["**SYNTHETIC data** — not a result on real imagery.\n" if synthetic else "",
                                   tables(results), headline(results)]))
    (folder / "tables.md").write_text(text + "\n")
    plot(results, folder / "label_fractions.png")
    draw_protocol_figure(protocol)
    return text
