"""A land-cover map of a whole scene from a fine-tuned run (:mod:`sslrs_tf.inference.maps`).

    python -m sslrs_tf.predict --run runs/finetune_segmentation --s2 S2_scene.tif --s1 S1_scene.tif --out landcover.tif

Rasters of any size are read window by window; S1 on another grid is resampled onto the S2
grid on the fly. The map has the S2 raster's CRS and transform (a classifier's: one pixel per
tile), uint8 class codes with a colour table and the class names, 255 = nodata.
"""

import argparse
import sys

import sslrs_tf  # noqa: F401  (its TF settings must come before TensorFlow loads)


def band_list(text):
    """``--s2-bands B02,B03,...`` as a list of names (None when not given)."""
    return [b.strip() for b in text.split(",") if b.strip()] if text else None


def add_scene_arguments(parser):
    """The options `predict` and `embed` share: the rasters, how to read them, tiles, batches, devices."""
    parser.add_argument("--s2", help="the Sentinel-2 raster (reflectance x 10 000; uint16, int16 or float)")
    parser.add_argument("--s1", help="the Sentinel-1 raster (VV, VH); resampled onto the S2 grid when it differs")
    parser.add_argument("--s2-bands", help="the S2 raster's band names in file order, comma-separated "
                        "(default: its band descriptions, else the 13 SEN12MS bands)")
    parser.add_argument("--s1-bands", help="the S1 raster's band names in file order "
                        "(default: its band descriptions, else VV,VH)")
    parser.add_argument("--s1-units", default="db", choices=("db", "linear"), help="S1 in dB (default) or linear power")
    parser.add_argument("--tile", type=int, help="tile side in px (default: the run's crop size)")
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per model call (default 8)")
    parser.add_argument("--distribution", default="auto", choices=("auto", "one_device", "mirrored"),
                        help="auto (default): each batch split across the GPUs when there are two or more "
                        "(MirroredStrategy), else the default device; mirrored: across the logical CPU devices too")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def parse_scene_arguments(parser, argv):
    """`parser`'s arguments, the shared ones checked (argparse's usage error otherwise)."""
    args = parser.parse_args(argv)
    if args.tile is not None and args.tile < 16:
        parser.error("--tile takes 16 px or more")
    if args.batch_size < 1:
        parser.error("--batch-size takes 1 or more")
    return args


def limit_gdal_cache():
    """Caps GDAL's block cache unless ``GDAL_CACHEMAX`` is set. GDAL reads it when its cache is first used: this
    comes before any raster is read."""
    import os

    from sslrs_tf.inference.maps import GDAL_CACHE_MB

    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))


def open_scene(args):
    """``(trained, scene)``: the run of ``--run`` on ``--distribution``, and its rasters opened with the bands it
    reads (a :class:`~sslrs_tf.inference.scenes.Scene`, to close)."""
    from sslrs_tf.inference.runs import open_run
    from sslrs_tf.inference.scenes import Scene

    trained = open_run(args.run, distribution=args.distribution)
    needed = {m: bands for m, (bands, _) in trained.inputs.items()}
    bands = {m: b for m, b in (("s1", band_list(args.s1_bands)), ("s2", band_list(args.s2_bands))) if b}
    return trained, Scene({"s1": args.s1, "s2": args.s2}, needed, bands, args.s1_units)


def main(argv=None):
    """The command line: ``python -m sslrs_tf.predict --run RUN --s2 S2.tif [--s1 S1.tif] --out MAP.tif``."""
    parser = argparse.ArgumentParser(
        prog="python -m sslrs_tf.predict",
        description="Predict a georeferenced land-cover map of a whole Sentinel-1/2 scene with a fine-tuned run.")
    parser.add_argument("--run", required=True, help="a finished downstream (fine-tuning) run directory")
    parser.add_argument("--out", required=True, help="the GeoTIFF to write")
    add_scene_arguments(parser)
    parser.add_argument("--overlap", type=int, help="px shared by neighbouring tiles (segmentation; default tile/4)")
    parser.add_argument("--probabilities", action="store_true", help="also write OUT_probabilities.tif: one band per "
                        "class, probability x 254")
    args = parse_scene_arguments(parser, argv)

    from sslrs_tf.errors import run_entry_point

    def action():
        limit_gdal_cache()
        from sslrs_tf.inference.maps import check_output, predict_map

        check_output(args.out, args.overwrite, args.probabilities)
        import keras

        trained, scene = open_scene(args)
        bars = []

        def progress(done, total):
            if not bars:
                bars.append(keras.utils.Progbar(total, unit_name="tile"))
            bars[0].update(done)

        with scene:
            made = predict_map(trained, scene, args.out, args.tile, args.overlap, args.batch_size, args.probabilities,
                               progress)
        print(f"written: {args.out} ({made['width']} x {made['height']} px, {scene.crs}, {made['tiles']} tiles)")

    return run_entry_point(action)


if __name__ == "__main__":
    sys.exit(main())
