"""Per-tile embeddings of a whole scene into Parquet (:mod:`sslrs_tf.inference.embeddings`).

    python -m sslrs_tf.embed --run runs/dual_simclr --s2 S2_scene.tif --s1 S1_scene.tif --out tiles.parquet
"""

import argparse
import sys

import sslrs_tf  # noqa: F401  (its TF settings must come before TensorFlow loads)
from sslrs_tf.predict import band_list


def main(argv=None):
    """The command line: ``python -m sslrs_tf.embed --run RUN --s2 S2.tif [--s1 S1.tif] --out FILE.parquet``."""
    parser = argparse.ArgumentParser(
        prog="python -m sslrs_tf.embed",
        description="Embed the tiles of a whole Sentinel-1/2 scene with a run's encoders, into a Parquet file.")
    parser.add_argument("--run", required=True, help="a finished run (pre-training or fine-tuning) or an export "
                        "directory (converted encoders)")
    parser.add_argument("--s2", help="the Sentinel-2 raster (reflectance x 10 000; uint16, int16 or float)")
    parser.add_argument("--s1", help="the Sentinel-1 raster (VV, VH); resampled onto the S2 grid when it differs")
    parser.add_argument("--out", required=True, help="the Parquet file to write")
    parser.add_argument("--s2-bands", help="the S2 raster's band names in file order, comma-separated")
    parser.add_argument("--s1-bands", help="the S1 raster's band names in file order, comma-separated")
    parser.add_argument("--s1-units", default="db", choices=("db", "linear"), help="S1 in dB (default) or linear power")
    parser.add_argument("--tile", type=int, help="tile side in px (default: the run's crop size)")
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per model call (default 8)")
    parser.add_argument("--distribution", default="auto", choices=("auto", "one_device", "mirrored"),
                        help="auto (default): each batch split across the GPUs when there are two or more "
                        "(MirroredStrategy), else the default device; mirrored: across the logical CPU devices too")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    if args.tile is not None and args.tile < 16:
        parser.error("--tile takes 16 px or more")

    from sslrs_tf.errors import run_entry_point

    def action():
        import os

        from sslrs_tf.inference.maps import GDAL_CACHE_MB

        # Read by GDAL when its block cache is first used (none of this process's rasters is read before).
        os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))
        from sslrs_tf.inference.maps import check_output

        check_output(args.out, args.overwrite)
        from sslrs_tf.inference.embeddings import embed_scene
        from sslrs_tf.inference.runs import open_run
        from sslrs_tf.inference.scenes import Scene

        trained = open_run(args.run, distribution=args.distribution)
        needed = {m: bands for m, (bands, _) in trained.inputs.items()}
        bands = {m: b for m, b in (("s1", band_list(args.s1_bands)), ("s2", band_list(args.s2_bands))) if b}
        with Scene({"s1": args.s1, "s2": args.s2}, needed, bands, args.s1_units) as scene:
            rows = embed_scene(trained, scene, args.out, args.tile, args.batch_size)
        print(f"written: {args.out} ({rows} tiles)")

    return run_entry_point(action)


if __name__ == "__main__":
    sys.exit(main())
