"""Pre-train encoders, or train a downstream model: ``python train.py --config FILE [key=value ...]``.

Examples:
    python train.py --config configs/quickstart.yaml
    python train.py --config configs/dual_simclr.yaml data.source=synthetic train.epochs=2

Watch a run with ``tensorboard --logdir runs``. Run the same command again to
resume an interrupted run. User errors print one line and exit with status 2.
"""

import argparse
import os
import sys

import sslrs_tf  # noqa: F401  (its TF settings must come before TensorFlow loads)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Pre-train encoders on co-registered Sentinel-1/2 data, or train a downstream model.")
    parser.add_argument("--config", required=True, help="YAML config (see configs/)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=5")
    args = parser.parse_args(argv)

    from sslrs_tf.config import load_config
    from sslrs_tf.errors import run_entry_point

    def action():
        config = load_config(args.config, args.overrides)
        # TensorFlow loads only now (about 10 s here): a mistyped key is reported at once.
        from sslrs_tf.training.run import train

        card = train(config)
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in card["final_metrics"].items())
        print(f"done: encoders and card.json in {os.path.join(config.run.dir, 'export')} ({metrics})")

    return run_entry_point(action)

if __name__ == "__main__":
    sys.exit(main())
