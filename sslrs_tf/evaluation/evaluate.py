"""Metrics of a trained downstream run: the model rebuilt from its config, its exported weights, one split.

Evaluation crops are deterministic (``data.eval_crop``-style centre crop of
``data.crop_size``; the research code took a random crop per test patch), so
the same weights give the same numbers every time.
"""

import json

from sslrs_tf.config import load_config
from sslrs_tf.errors import UserError
from sslrs_tf.evaluation.reports import markdown_table, report
from sslrs_tf.experiment import Experiment
from sslrs_tf.metrics import ConfusionMatrix, MultiLabelCounts
from sslrs_tf.training.rundir import RunDir


def evaluate_run(run_dir, split=None, batch_size=None):
    """Evaluates the exported model of `run_dir` on `split` (default: its ``data.test_split``).

    Writes ``metrics.json`` and ``metrics.md`` into the run directory.

    Returns:
        The metrics dict (see :func:`sslrs_tf.evaluation.reports.report`, plus run facts).
    """
    run = RunDir(run_dir)
    if not run.config.is_file():
        if (run.path / "card.json").is_file():
            raise UserError(f"--run {run.path}: converted or exported encoders, not a run (no config.yaml); "
                            "evaluate them through a fine-tuning config (model.pretrained) or a protocol (pretrained)")
        raise UserError(f"--run {run.path}: no config.yaml (not a run directory)")
    config = load_config(run.config)
    kind = config.data.label
    if not run.weights.is_file():
        raise UserError(f"--run {run.path}: no {run.weights.relative_to(run.path)} (the run has not finished; "
                        "run train.py with its config again to complete it)")
    if kind is None:
        return _evaluate_pretraining(run, config, split, batch_size)
    split = split or config.data.test_split
    experiment, ds, model = _rebuild(run, config, split, batch_size)
    names = list(experiment.class_names)
    counts = MultiLabelCounts(len(names)) if kind == "multi" else ConfusionMatrix(len(names))
    for x, y in ds:
        counts.update_state(y, model(x, training=False))
    result = report(counts.result(), kind, names)
    result.update({"run": str(run.path), "split": split, "label": kind, "inputs": config.model.inputs,
                   "pretrained": config.model.pretrained, "freeze": config.model.freeze,
                   "label_fraction": config.data.label_fraction, "label_count": config.data.label_count,
                   "label_scheme": config.data.label_scheme, "seed": config.train.seed,
                   "dataset": config.data.dataset, "synthetic": config.data.source == "synthetic"})
    run.metrics.write_text(json.dumps(result, indent=2) + "\n")
    (run.path / "metrics.md").write_text(markdown_table(result) + "\n")
    return result


def _rebuild(run, config, split, batch_size):
    """The run's :class:`~sslrs_tf.experiment.Experiment`, the evaluation pipeline of `split`, and the
    model with the run's exported weights."""
    experiment = Experiment(config)
    return (experiment, *experiment.restored(run.weights, split, batch_size))


def _evaluate_pretraining(run, config, split, batch_size):
    """Cross-modal retrieval of a pre-training run on `split` (default: its validation split)."""
    from sslrs_tf.evaluation import retrieval

    split = split or config.data.validation_split
    if not split:
        raise UserError(f"--run {run.path}: the run has no data.validation_split; name a split with --split")
    _, ds, model = _rebuild(run, config, split, batch_size)
    a, b = retrieval.embed_split(model, ds)
    result = retrieval.retrieval_report(a, b)
    result.update({"run": str(run.path), "split": split, "method": config.model.method,
                   "dataset": config.data.dataset, "synthetic": config.data.source == "synthetic"})
    run.metrics.write_text(json.dumps(result, indent=2) + "\n")
    (run.path / "metrics.md").write_text(retrieval.markdown_table(result) + "\n")
    return result
