"""`make quickstart`: the main job on the embedded synthetic world.

Generates the synthetic Sentinel world (cached), builds SEN12MS and DFC2020 from
it as TFDS datasets (cached), and draws a batch through the training pipeline.
The data is SYNTHETIC: it shows the library working end to end, not results on
real Sentinel imagery.
"""

import argparse
import sys
import time

from sslrs_tf.errors import UserError

WORLD = {"patches": 400, "size": 64, "seed": 0, "dfc_validation": 100, "dfc_test": 100}


def main(argv=None):
    """Command-line entry point of `make quickstart`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="data/synthetic", help="folder of the synthetic world (cached)")
    parser.add_argument("--data-dir", default="data/tfds", help="TFDS data folder (cached)")
    args = parser.parse_args(argv)
    start = time.time()
    try:
        from sslrs_tf.data.build import prepare_world
        from sslrs_tf.data.pipeline import make_dataset

        builders = prepare_world(args.world, args.data_dir, WORLD)
        for name, builder in builders.items():
            splits = ", ".join(f"{k}: {v.num_examples}" for k, v in builder.info.splits.items())
            skipped = builder.info.metadata.get("skipped", {})
            print(f"{builder.info.full_name:28s} {splits}; skipped {skipped or 'none'}")
        batch = next(iter(make_dataset(builders["sen12ms"], "train", crop_size=48, batch_size=32)))
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in batch.items())
        print(f"a training batch (per-sample-max normalised, aligned 48 px crops): {shapes}")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"quick start done in {time.time() - start:.0f} s (SYNTHETIC data). Pre-training arrives with train.py.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
