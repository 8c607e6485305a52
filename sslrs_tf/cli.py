"""The command lines: ``train.py`` / ``sslrs-train`` and ``evaluate.py`` / ``sslrs-evaluate``.

Both read their arguments and the config before TensorFlow loads (about 10 s here), so that a
mistyped key is reported at once; user errors print one line and exit with status 2
(:func:`sslrs_tf.errors.run_entry_point`).
"""

import argparse
import functools
import os


def train_main(argv=None):
    """``train.py --config FILE_OR_NAME [key=value ...]``: pre-train encoders, or train a downstream model.

    Examples:
        sslrs-train --config dual_simclr.yaml
        python train.py --config configs/dual_simclr.yaml data.source=synthetic train.epochs=2

    Watch a run with ``tensorboard --logdir runs``. Run the same command again to resume an
    interrupted run.
    """
    parser = argparse.ArgumentParser(
        description="Pre-train encoders on co-registered Sentinel-1/2 data, or train a downstream model.")
    parser.add_argument("--config", required=True,
                        help="YAML config: a file, or the name of a shipped one (e.g. dual_simclr.yaml, tiny)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=5")
    args = parser.parse_args(argv)

    from sslrs_tf.config import load_config
    from sslrs_tf.errors import run_entry_point

    def action():
        config = load_config(args.config, args.overrides)
        # TensorFlow loads only now: a mistyped key is reported at once.
        from sslrs_tf.training.run import train

        card = train(config, explicit={o.split("=", 1)[0].strip() for o in args.overrides}, preemption=True)
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in card["final_metrics"].items())
        print(f"done: encoders and card.json in {os.path.join(config.run.dir, 'export')} ({metrics})")

    return run_entry_point(action)


def evaluate_main(argv=None):
    """``evaluate.py --run RUN_DIR``, ``--ensemble RUN_A RUN_B ...`` or ``--protocol FILE_OR_NAME [key=value ...]``.

    ``--run`` writes ``metrics.json`` and ``metrics.md`` into the run directory and prints the
    table (a pre-training run: cross-modal retrieval). ``--ensemble`` averages the runs' class
    probabilities and prints the ensemble's table (written into ``--out``). ``--figure N`` draws N
    test patches with the predictions (``qualitative.png`` in the run directory or ``--out``).
    ``--protocol`` trains and evaluates every run of the protocol that is not finished yet, then
    writes ``tables.md``, ``results.json`` and ``label_fractions.png`` into its directory and
    prints the tables.

    Examples:
        sslrs-evaluate --run runs/finetune_classification
        sslrs-evaluate --ensemble runs/unet runs/swinunet --out runs/ensemble --figure 6
        python evaluate.py --protocol protocol_isprs.yaml seeds=[0]
        python evaluate.py --protocol protocol_isprs.yaml --smoke      # minutes on a CPU, synthetic data
    """
    parser = argparse.ArgumentParser(description="Metrics of a downstream run or an ensemble of runs, or a "
                                                 "comparison protocol.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="run directory (train.py): a downstream run's metrics, a pre-training run's "
                                    "retrieval")
    what.add_argument("--ensemble", nargs="+", metavar="RUN", help="downstream runs whose class probabilities are "
                                                                  "averaged")
    what.add_argument("--protocol", help="protocol file, or the name of a shipped one (e.g. protocol_isprs.yaml)")
    parser.add_argument("--split", default=None, help="--run, --ensemble: split to evaluate (default: the run's "
                                                      "data.test_split)")
    parser.add_argument("--batch-size", type=int, default=None, help="--run, --ensemble: evaluation batch size "
                                                                     "(default: the run's)")
    parser.add_argument("--out", default=None, help="--ensemble: directory for metrics.json, metrics.md (and the figure)")
    parser.add_argument("--figure", type=int, default=None, metavar="N",
                        help="--run, --ensemble (segmentation): draw N test patches with the predictions into "
                             "qualitative.png")
    parser.add_argument("--smoke", action="store_true",
                        help="--protocol: run it in miniature on a synthetic world (into DIR_smoke), to check it "
                             "before the real job")
    parser.add_argument("overrides", nargs="*", help="--protocol: key=value overrides of the protocol file")
    args = parser.parse_args(argv)
    if args.smoke and not args.protocol:
        parser.error("--smoke goes with --protocol")
    if args.figure is not None and (args.figure < 1 or args.protocol or (args.ensemble and not args.out)):
        parser.error("--figure N takes N >= 1, with --run, or with --ensemble and --out")

    from sslrs_tf.errors import run_entry_point

    def action():
        from sslrs_tf.evaluation.evaluate import evaluate_run
        from sslrs_tf.evaluation.protocol import load_protocol, report_protocol, run_protocol
        from sslrs_tf.evaluation.reports import markdown_table
        from sslrs_tf.training.run import train

        if args.run:
            result = evaluate_run(args.run, args.split, args.batch_size)
            print(markdown_table(result))
            print(f"written: {args.run}/metrics.json, {args.run}/metrics.md")
            if args.figure:
                _figure({os.path.basename(os.path.normpath(args.run)): [args.run]}, args.run, args.figure, args.split)
        elif args.ensemble:
            from sslrs_tf.evaluation.ensemble import evaluate_ensemble

            result = evaluate_ensemble(args.ensemble, args.split, args.batch_size, args.out)
            print(markdown_table(result))
            if args.out:
                print(f"written: {args.out}/metrics.json, {args.out}/metrics.md")
            if args.figure:
                panels = {os.path.basename(os.path.normpath(r)): [r] for r in args.ensemble}
                _figure({**panels, "ensemble": args.ensemble}, args.out, args.figure, args.split)
        else:
            protocol = load_protocol(args.protocol, args.overrides, check_pretrained=not args.smoke)
            # SIGTERM in a run: its checkpoint, and the same command goes on from it.
            preemptible = functools.partial(train, preemption=True)
            if args.smoke:
                from sslrs_tf.evaluation.protocol import smoke_protocol

                protocol = smoke_protocol(protocol, preemptible)
            print(report_protocol(protocol, run_protocol(protocol, preemptible)))
            figure = ", qualitative.png" if protocol.figure else ""
            print(f"written: {protocol.dir}/tables.md, results.json, label_fractions.png{figure}")

    return run_entry_point(action)


def _figure(panels, folder, patches, split):
    from sslrs_tf.evaluation.ensemble import qualitative

    path = os.path.join(folder, "qualitative.png")
    qualitative(panels, path, patches, split)
    print(f"written: {path}")
