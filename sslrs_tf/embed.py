"""Per-tile embeddings of a whole scene into Parquet (:mod:`sslrs_tf.inference.embeddings`).

    python -m sslrs_tf.embed --run runs/dual_simclr --s2 S2_scene.tif --s1 S1_scene.tif --out tiles.parquet
"""

import argparse
import sys

import sslrs_tf  # noqa: F401  (its TF settings must come before TensorFlow loads)
from sslrs_tf.predict import add_scene_arguments, limit_gdal_cache, open_scene, parse_scene_arguments


def main(argv=None):
    """The command line: ``python -m sslrs_tf.embed --run RUN --s2 S2.tif [--s1 S1.tif] --out FILE.parquet``."""
    parser = argparse.ArgumentParser(
        prog="python -m sslrs_tf.embed",
        description="Embed the tiles of a whole Sentinel-1/2 scene with a run's encoders, into a Parquet file.")
    parser.add_argument("--run", required=True, help="a finished run (pre-training or fine-tuning) or an export "
                        "directory (converted encoders)")
    parser.add_argument("--out", required=True, help="the Parquet file to write")
    add_scene_arguments(parser)
    args = parse_scene_arguments(parser, argv)

    from sslrs_tf.errors import run_entry_point

    def action():
        limit_gdal_cache()
        from sslrs_tf.inference.maps import check_output

        check_output(args.out, args.overwrite)
        from sslrs_tf.inference.embeddings import embed_scene

        trained, scene = open_scene(args)
        with scene:
            rows = embed_scene(trained, scene, args.out, args.tile, args.batch_size)
        print(f"written: {args.out} ({rows} tiles)")

    return run_entry_point(action)


if __name__ == "__main__":
    sys.exit(main())
