"""Several downstream runs as one model: their class probabilities averaged (the CVPR EarthVision 2022
ensemble of UNet and SwinUNet), and the qualitative figure of their predictions.

    python evaluate.py --ensemble runs/unet runs/swinunet --out runs/ensemble [--figure 6]

The runs may differ in everything that prepares their input (bands, normalisation, one
stacked encoder or one per sensor): each run reads the split through its own pipeline, and
the pipelines are read in lockstep. They must agree on what is predicted — the dataset, the
split, the label kind, the crop — and the sample ids of every batch are compared, so
probabilities of different samples are never averaged.
"""

import json
import pathlib

import numpy as np

from sslrs_tf.config import load_config
from sslrs_tf.errors import UserError
from sslrs_tf.evaluation.reports import markdown_table, report
from sslrs_tf.experiment import Experiment, config_value
from sslrs_tf.metrics import ConfusionMatrix, MultiLabelCounts
from sslrs_tf.training.rundir import RunDir

#: what every member of an ensemble must share: config keys
SHARED = ("data.source", "data.dataset", "data.config", "data.label", "data.crop_size")


def _run_config(run_dir, what):
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise UserError(f"{what} {run.path}: no config.yaml (not a run directory)")
    if not run.weights.is_file():
        raise UserError(f"{what} {run.path}: no {run.weights.relative_to(run.path)} (the run has not finished)")
    config = load_config(run.config)
    if not config.data.label:
        raise UserError(f"{what} {run.path}: a pre-training run; an ensemble averages downstream predictions")
    return run, config


class Members:
    """Downstream runs rebuilt with their exported weights, read in lockstep.

    Args:
        run_dirs: the runs' directories (two or more for an ensemble; one is allowed for a figure).
        split: the split to predict (default: the first run's ``data.test_split``).
        batch_size: samples per batch (default: the first run's ``train.batch_size``).
        what: how an error names the runs (``--ensemble``, ``protocol``).
    """

    def __init__(self, run_dirs, split=None, batch_size=None, what="--ensemble"):
        loaded = [_run_config(r, what) for r in run_dirs]
        first = loaded[0][1]
        for run, config in loaded[1:]:
            for key in SHARED:
                mine, theirs = config_value(config, key), config_value(first, key)
                if mine != theirs:
                    raise UserError(f"{what}: {run.path} has {key} {mine!r}, {loaded[0][0].path} {theirs!r}; "
                                    "an ensemble's runs must predict the same thing")
        self.runs = [run for run, _ in loaded]
        self.kind = first.data.label
        self.split = split or first.data.test_split
        self.batch_size = batch_size or first.train.batch_size
        self.experiments = [Experiment(config) for _, config in loaded]
        self.class_names = list(self.experiments[0].class_names)
        self.models = [experiment.restored(run.weights, self.split, self.batch_size)[1]
                       for run, experiment in zip(self.runs, self.experiments, strict=True)]

    def probabilities(self, logits):
        """Class probabilities of a model's logits: softmax (one class per sample or pixel), sigmoid (multi)."""
        import tensorflow as tf

        return tf.sigmoid(logits) if self.kind == "multi" else tf.nn.softmax(logits, axis=-1)

    def batches(self, batch_size=None):
        """Yields ``(ids, targets, [probabilities of each run])`` per batch, NumPy."""
        datasets = [e.dataset(self.split, training=False, batch_size=batch_size or self.batch_size, with_ids=True)
                    for e in self.experiments]
        for batch in zip(*datasets):
            ids = [x["id"].numpy() for x, _ in batch]
            for run, other in zip(self.runs[1:], ids[1:]):
                if not np.array_equal(other, ids[0]):
                    raise UserError(f"{run.path} reads the samples of {self.split} in another order than "
                                    f"{self.runs[0]}: its pipeline is not the same deterministic pass")
            probs = [self.probabilities(model({k: v for k, v in x.items() if k != "id"}, training=False)).numpy()
                     for model, (x, _) in zip(self.models, batch, strict=True)]
            yield ids[0], batch[0][1].numpy(), probs


def average(probabilities):
    """The ensemble's class probabilities: the mean of its members'."""
    return np.mean(np.stack(probabilities), axis=0)


def evaluate_ensemble(run_dirs, split=None, batch_size=None, out=None):
    """Metrics of the runs' averaged class probabilities on `split` (default: their ``data.test_split``).

    Args:
        run_dirs: two or more downstream runs.
        out: a directory for ``metrics.json`` and ``metrics.md`` (none: nothing written).

    Returns:
        The metrics dict (see :func:`sslrs_tf.evaluation.reports.report`, plus the members).
    """
    if len(run_dirs) < 2:
        raise UserError(f"--ensemble needs two or more runs; received {len(run_dirs)}")
    members = Members(run_dirs, split, batch_size)
    c = len(members.class_names)
    counts = MultiLabelCounts(c, from_logits=False) if members.kind == "multi" else ConfusionMatrix(c)
    for _, y, probs in members.batches():
        p = average(probs)
        counts.update_state(y, p if members.kind == "multi" else np.argmax(p, axis=-1))
    result = report(counts.result(), members.kind, members.class_names)
    config = members.experiments[0].config
    result.update({"run": "ensemble of " + " + ".join(str(r.path) for r in members.runs),
                   "members": [str(r.path) for r in members.runs], "split": members.split, "label": members.kind,
                   "dataset": config.data.dataset, "synthetic": config.data.source == "synthetic"})
    if out is not None:
        out = pathlib.Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "metrics.md").write_text(markdown_table(result) + "\n")
    return result


#: one colour per DFC2020 class (Forest ... Water), after the IGBP legend's colours
CLASS_COLOURS = ("#009900", "#c6b044", "#b6ff05", "#27ff87", "#c24f44", "#a5a5a5", "#f9ffa4", "#1c0dff")


def draw_figure(rgb, truth, predictions, class_names, title=None):
    """The qualitative figure: one row per patch — Sentinel-2 true colour, the ground truth, then one panel per
    prediction — one colour per class and a legend.

    Args:
        rgb: ``[N, H, W, 3]`` reflectance in [0, 1] (B04, B03, B02).
        truth: ``[N, H, W]`` class codes, 255 = no label (white).
        predictions: ``{panel title: [N, H, W] class codes}``, in panel order.
        class_names: the classes, in code order.
        title: the figure's title.

    Returns:
        The matplotlib Figure (``fig.axes``: N x (2 + len(predictions)) panels, row by row).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colors, patches, pyplot as plt

    colours = [CLASS_COLOURS[i % len(CLASS_COLOURS)] for i in range(len(class_names))]
    cmap = colors.ListedColormap(colours)
    cmap.set_over("white")  # 255: no label
    panels = [("Sentinel-2 true colour", None), ("ground truth", truth), *predictions.items()]
    n = len(rgb)
    fig, axes = plt.subplots(n, len(panels), figsize=(2.2 * len(panels), 2.2 * n + 0.8), squeeze=False)
    for i in range(n):
        for j, (name, maps) in enumerate(panels):
            ax = axes[i, j]
            if maps is None:
                # A 0-3 000 reflectance stretch: vegetation and soil are visible, clouds saturate.
                ax.imshow(np.clip(np.asarray(rgb[i], np.float32) / 0.3, 0.0, 1.0))
            else:
                ax.imshow(np.asarray(maps[i]), cmap=cmap, vmin=-0.5, vmax=len(class_names) - 0.5,
                          interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    fig.legend(handles=[patches.Patch(color=c, label=name) for c, name in zip(colours, class_names)],
               loc="lower center", ncol=min(len(class_names), 8), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, color="red" if "SYNTHETIC" in title else "black")
    fig.tight_layout(rect=(0, 0.06, 1, 0.97 if title else 1))
    return fig


def qualitative(panels, path, patches=6, split=None):
    """Draws `patches` test patches with the predictions of each panel's runs into `path` (PNG).

    Args:
        panels: ``{panel title: [run dirs]}``: a panel with several runs shows their ensemble.
        path: the PNG to write.
        patches: number of patches (rows): the first of the split's deterministic pass.

    Returns:
        The matplotlib Figure.
    """
    from matplotlib import pyplot as plt

    from sslrs_tf.data.pipeline import make_dataset

    runs = list(dict.fromkeys(str(r) for group in panels.values() for r in group))
    members = Members(runs, split, batch_size=patches, what="--figure")
    if members.kind != "segmentation":
        raise UserError(f"--figure draws land-cover maps: it needs segmentation runs; {runs[0]} is {members.kind}-label")
    ids, truth, probs = next(members.batches(patches))
    by_run = dict(zip(runs, probs, strict=True))
    predictions = {title: np.argmax(average([by_run[str(r)] for r in group]), axis=-1)
                   for title, group in panels.items()}
    config = members.experiments[0].config
    # True colour from the same samples and crops, read as reflectance.
    colour = make_dataset(members.experiments[0].source, members.split, modalities=("s2",), bands={"s2": "rgb"},
                          normalization="fixed", crop_size=config.data.crop_size, training=False,
                          label="segmentation", batch_size=patches, with_ids=True)
    x, _ = next(iter(colour))
    if not np.array_equal(x["id"].numpy(), ids):
        raise UserError("--figure: the true-colour pass read other samples than the runs")  # the pipelines differ
    synthetic = " — SYNTHETIC data" if config.data.source == "synthetic" else ""
    fig = draw_figure(x["s2"].numpy(), truth, predictions, members.class_names,
                      title=f"{config.data.dataset} {members.split}, {len(ids)} patches{synthetic}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return fig
