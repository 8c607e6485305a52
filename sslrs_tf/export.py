"""Write a finished run as a TensorFlow SavedModel for serving (:mod:`sslrs_tf.inference.serving`).

    python -m sslrs_tf.export --run RUN --out DIR [--overwrite]

A downstream run serves class probabilities, a pre-training run its encoders' embeddings; raw
S1 (dB) and S2 (reflectance x 10 000) go in.
"""

import argparse
import sys

import sslrs_tf  # noqa: F401  (its TF settings must come before TensorFlow loads)


def main(argv=None):
    """The command line: ``python -m sslrs_tf.export --run RUN --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m sslrs_tf.export",
        description="Write a finished run as a TensorFlow SavedModel that takes raw Sentinel-1/2 input "
                    "(clipping and normalisation inside) and returns class probabilities or embeddings.")
    parser.add_argument("--run", required=True, help="a finished run directory (or an export directory)")
    parser.add_argument("--out", required=True, help="the SavedModel directory to write (card.json goes in it)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)

    from sslrs_tf.errors import run_entry_point

    def action():
        from sslrs_tf.inference.maps import check_output

        check_output(args.out, args.overwrite)  # before the run is loaded
        from sslrs_tf.inference.runs import open_run
        from sslrs_tf.inference.serving import export_saved_model

        card = export_saved_model(open_run(args.run), args.out, args.overwrite)
        serving = card["serving"]
        inputs = ", ".join(f"{m} [N, H, W, {len(d['bands'])}]" for m, d in serving["inputs"].items())
        print(f"SavedModel in {args.out}: signatures {', '.join(serving['signatures'])} take {inputs} raw, "
              f"return {', '.join(serving['outputs'])}; card.json beside it")

    return run_entry_point(action)


if __name__ == "__main__":
    sys.exit(main())
