"""Input samples/s on SSL4EO-S12's records (a location's four seasons) against SEN12MS's (one patch).

Both synthetic, built with this library's builders, read by the same pipeline in one run: 128 px
crops, per-sample-max normalised, batch 32; an SSL4EO-S12 sample is one season's S1/S2 pair of a
264 px location (record 9.5 MB), a SEN12MS sample one 256 px patch (record 2.49 MB). Runs alternate
and medians are reported. Both run in a process of their own with the malloc settings every command
sets (``sslrs_tf.malloc``).

    python bench/input_seasons.py [--locations 48] [--repeats 3]   # about 4 minutes

Prints one JSON line; ``ratio`` is SSL4EO-S12's samples/s / SEN12MS's.
"""

import argparse
import json
import multiprocessing
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import sslrs_tf  # noqa: E402,F401  (its TF settings must come before TensorFlow loads)
from bench.machine import describe  # noqa: E402
from sslrs_tf.malloc import keep_freed_memory  # noqa: E402

BATCH, CROP = 32, 128


def samples_per_second(data_dir, samples):
    """Samples/s of the training pipeline on the built dataset in `data_dir` (after three warm-up batches)."""
    import tensorflow_datasets as tfds

    from sslrs_tf.data.pipeline import make_dataset

    builder = tfds.builder_from_directory(data_dir)
    # A buffer that does not refill every epoch of the small synthetic sets (as bench/input_pipeline.py).
    iterator = iter(make_dataset(builder, "train", crop_size=CROP, batch_size=BATCH, shuffle_buffer=16))
    for _ in range(3):
        next(iterator)
    start, done = time.perf_counter(), 0
    while done < samples:
        next(iterator)["s2"].numpy()
        done += BATCH
    return done / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=48, help="SSL4EO-S12 locations (and SEN12MS patches x 4)")
    parser.add_argument("--samples", type=int, default=640, help="samples timed per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None, help="folder for the synthetic files (default: a temp folder)")
    args = parser.parse_args()

    from sslrs_tf.data import synthetic
    from sslrs_tf.datasets import build, prepare_world

    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_seasons_"))
    if not (work / "ssl4eo").exists():
        synthetic.generate_ssl4eo(work / "ssl4eo", args.locations, 264)
    ssl4eo = build("ssl4eo_s12", work / "ssl4eo", work / "tfds", {"name": "bench", "holdout_fraction": 0.0})
    # As many SEN12MS patches as SSL4EO-S12 seasons: the same number of distinct pairs.
    params = {"patches": 4 * args.locations, "size": 256, "seed": 0, "dfc_validation": 1, "dfc_test": 1}
    sen12ms = prepare_world(work / "world", work / "tfds", params)["sen12ms"]

    spawn = multiprocessing.get_context("spawn")
    rates = {"ssl4eo_s12": [], "sen12ms": []}
    with spawn.Pool(1, initializer=keep_freed_memory) as pool:
        for _ in range(args.repeats):
            for name, builder in (("ssl4eo_s12", ssl4eo), ("sen12ms", sen12ms)):
                rates[name].append(pool.apply(samples_per_second, (builder.data_dir, args.samples)))
    line = {"bench": "input_seasons", "what": f"S1+S2 samples/s, {CROP} px crops, per-sample-max, batch {BATCH}",
            "ssl4eo_s12_128": round(statistics.median(rates["ssl4eo_s12"]), 1),
            "sen12ms_128": round(statistics.median(rates["sen12ms"]), 1)}
    line["ratio"] = round(line["ssl4eo_s12_128"] / line["sen12ms_128"], 2)
    line.update({"repeats": args.repeats, "locations": args.locations, "machine": describe()})
    print(json.dumps(line))


if __name__ == "__main__":
    main()
