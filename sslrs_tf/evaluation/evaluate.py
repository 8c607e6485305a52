"""Metrics of a trained downstream run: the model rebuilt from its config, its exported weights, one split.

Evaluation crops are deterministic (``data.eval_crop``-style centre crop of
``data.crop_size``; the research code took a random crop per test patch), so
the same weights give the same numbers every time.
"""

import json

from sslrs_tf.config import load_config
from sslrs_tf.data.pipeline import class_names, make_dataset, split_size
from sslrs_tf.errors import UserError
from sslrs_tf.evaluation.metrics import ConfusionMatrix, MultiLabelCounts, report
from sslrs_tf.methods import get_method
from sslrs_tf.training.run import builder_for, resolve_config_bands
from sslrs_tf.training.rundir import RunDir


def evaluate_run(run_dir, split=None, batch_size=None):
    """Evaluates the exported model of `run_dir` on `split` (default: its ``data.test_split``).

    Writes ``metrics.json`` and ``metrics.md`` into the run directory.

    Returns:
        The metrics dict (see :func:`sslrs_tf.evaluation.metrics.report`, plus run facts).
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
    builder, ds, model = _rebuild(run, config, split, batch_size)
    names = class_names(builder)
    counts = MultiLabelCounts(len(names)) if kind == "multi" else ConfusionMatrix(len(names))
    for x, y in ds:
        counts.update_state(y, model(x, training=False))
    result = report(counts.result(), kind, names)
    result.update({"run": str(run.path), "split": split, "label": kind, "inputs": config.model.inputs,
                   "pretrained": config.model.pretrained, "freeze": config.model.freeze,
                   "label_fraction": config.data.label_fraction, "seed": config.train.seed,
                   "dataset": config.data.dataset, "synthetic": config.data.source == "synthetic"})
    run.metrics.write_text(json.dumps(result, indent=2) + "\n")
    (run.path / "metrics.md").write_text(markdown_table(result) + "\n")
    return result


def _rebuild(run, config, split, batch_size):
    """The run's data source, the evaluation pipeline of `split`, and the model with the run's exported weights."""
    builder = builder_for(config)
    try:
        split_size(builder, split)
    except UserError as err:
        raise UserError(f"--split {split}: {err}") from None
    bands = resolve_config_bands(config)
    method = get_method(config.model.method)
    ds = make_dataset(builder, split, modalities=method.input_modalities(config), bands=bands,
                      missing_bands=config.data.missing_bands, normalization=config.data.normalization,
                      crop_size=config.data.crop_size, training=False, label=config.data.label,
                      batch_size=batch_size or config.train.batch_size)
    model = method.from_run_config(config, bands, pretrained=False)  # all weights come from the run
    sample = next(iter(ds.take(1)))
    inputs = sample[0] if isinstance(sample, tuple) else sample
    model({k: v[:1] for k, v in inputs.items()})  # creates the variables the weights are loaded into
    model.load_weights(run.weights)
    return builder, ds, model


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


def markdown_table(result):
    """One run's metrics as a markdown table: a row per class, the averages last (retrieval: a row per direction)."""
    if "directions" in result:
        from sslrs_tf.evaluation.retrieval import markdown_table as retrieval_table

        return retrieval_table(result)
    per_class = result["per_class"]
    columns = list(next(iter(per_class.values())))
    lines = [f"| class | {' | '.join(columns)} | support |", "|---" * (len(columns) + 2) + "|"]
    for name, values in per_class.items():
        cells = ["–" if values[c] is None else f"{values[c]:.1f}" for c in columns]
        lines.append(f"| {name} | {' | '.join(cells)} | {result['support'][name]} |")
    scores = " · ".join(f"{k} {v:.1f}" for k, v in result["scores"].items())
    note = " — SYNTHETIC data" if result.get("synthetic") else ""
    return "\n".join([f"{result['run']} on {result['split']} ({result['label']}-label){note}", "", *lines, "",
                      f"**{scores}** (%)"])

