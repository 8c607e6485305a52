"""Evaluate a downstream run, or run a whole comparison protocol.

    python evaluate.py --run RUN_DIR [--split test]
    python evaluate.py --protocol configs/protocol_isprs.yaml [key=value ...]

Examples:
    python train.py --config configs/finetune_classification.yaml
    python evaluate.py --run runs/finetune_classification
    python evaluate.py --protocol configs/protocol_isprs.yaml seeds=[0]

``--run`` writes ``metrics.json`` and ``metrics.md`` into the run directory and
prints the table. ``--protocol`` trains and evaluates every run of the protocol
that is not finished yet, then writes ``tables.md``, ``results.json`` and
``label_fractions.png`` into its directory and prints the tables. User errors
print one line and exit with status 2.
"""

import argparse
import sys

import sslrs_tf  # noqa: F401  (its TF settings must come before TensorFlow loads)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Metrics of a downstream run, or a comparison protocol.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="run directory (train.py): a downstream run's metrics, a pre-training run's retrieval")
    what.add_argument("--protocol", help="protocol file (see configs/protocol_isprs.yaml)")
    parser.add_argument("--split", default=None, help="--run: split to evaluate (default: the run's data.test_split)")
    parser.add_argument("--batch-size", type=int, default=None, help="--run: evaluation batch size (default: the run's)")
    parser.add_argument("overrides", nargs="*", help="--protocol: key=value overrides of the protocol file")
    args = parser.parse_args(argv)

    from sslrs_tf.errors import run_entry_point
    from sslrs_tf.evaluation.evaluate import evaluate_run, markdown_table
    from sslrs_tf.evaluation.protocol import load_protocol, report_protocol, run_protocol

    def action():
        if args.run:
            result = evaluate_run(args.run, args.split, args.batch_size)
            print(markdown_table(result))
            print(f"written: {args.run}/metrics.json, {args.run}/metrics.md")
        else:
            protocol = load_protocol(args.protocol, args.overrides)
            print(report_protocol(protocol, run_protocol(protocol)))
            print(f"written: {protocol.dir}/tables.md, results.json, label_fractions.png")

    return run_entry_point(action)

if __name__ == "__main__":
    sys.exit(main())
