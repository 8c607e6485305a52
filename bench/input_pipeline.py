"""Input pipeline samples/s: the TFDS pipeline against per-sample rasterio reading (research code style).

Both read the same synthetic 256 x 256 px SEN12MS patches, in one run, and
produce the same thing: batches of S1 + S2, per-sample-max normalised, with a
random crop aligned across the two. The research code's loader opens the s1,
s2 and lc GeoTIFFs of every sample at every step (lc even for pre-training),
normalises in NumPy and collates; here it runs in 2 worker processes, as a
``DataLoader(num_workers=2)`` would on this 2-core machine. Runs alternate
(A, B, A, B, ...) and medians are reported, because this machine's throughput
drifts by 20-35 % from run to run.

    python bench/input_pipeline.py [--patches 256] [--repeats 3]

Prints one JSON line; ``ratio`` is ours / theirs at 128 px crops (the
pre-training crop), ``ratio_256`` at full 256 px patches.
"""

import argparse
import json
import multiprocessing
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

BATCH = 32


def research_style_sample(args):
    """One sample as the research code loads it: three rasterio opens, NumPy normalisation, a random crop."""
    import rasterio

    s2_path, crop, seed = args
    rng = np.random.default_rng(seed)
    with rasterio.open(s2_path) as src:
        s2 = src.read().astype(np.float32)
    with rasterio.open(s2_path.replace("_s2_", "_s1_").replace("/s2_", "/s1_")) as src:
        s1 = src.read().astype(np.float32)
    with rasterio.open(s2_path.replace("_s2_", "_lc_").replace("/s2_", "/lc_")) as src:
        src.read()
    s1 = np.clip(np.nan_to_num(s1, nan=-25), -25, 0) + 25
    s1 /= np.maximum(s1.max(axis=(1, 2), keepdims=True), 1e-12)
    s2 = np.clip(s2, 0, 10000)
    s2 /= np.maximum(s2.max(axis=(1, 2), keepdims=True), 1e-12)
    top, left = rng.integers(0, s1.shape[1] - crop + 1, 2)
    return s1[:, top : top + crop, left : left + crop], s2[:, top : top + crop, left : left + crop]


def run_rasterio(pool, files, crop, samples):
    """Samples/s of the research-style reader feeding batches of BATCH.

    Samples stream through the workers (``imap``) while the main process
    collates, as a DataLoader's workers keep loading ahead of the training loop.
    """
    jobs = ((files[i % len(files)], crop, i) for i in range(samples + 2 * BATCH))
    stream = pool.imap(research_style_sample, jobs, chunksize=4)
    collate = lambda: [next(stream) for _ in range(BATCH)]  # noqa: E731
    pairs = collate()  # warm-up batch
    start, done = time.perf_counter(), 0
    while done < samples:
        pairs = collate()
        np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        done += BATCH
    return done / (time.perf_counter() - start)


def run_tfds(builder, crop, samples):
    """Samples/s of sslrs_tf's pipeline (after one warm-up batch)."""
    from sslrs_tf.data.pipeline import make_dataset

    # The synthetic set has a few hundred training samples; a shuffle buffer near
    # that size would refill (and stall) every epoch, which on real SEN12MS
    # happens once per 180 000 samples. 64 keeps the measurement representative.
    iterator = iter(make_dataset(builder, "train", crop_size=crop, batch_size=BATCH, shuffle_buffer=64))
    for _ in range(3):  # warm-up: tf.data's autotuning ramps up over the first batches
        next(iterator)
    start, done = time.perf_counter(), 0
    while done < samples:
        batch = next(iterator)
        batch["s2"].numpy()
        done += BATCH
    return done / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=256)
    parser.add_argument("--samples", type=int, default=1024, help="samples timed per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None, help="folder for the synthetic files (default: a temp folder)")
    args = parser.parse_args()

    from sslrs_tf.quickstart import prepare_world

    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_input_"))
    params = {"patches": args.patches, "size": 256, "seed": 0, "dfc_validation": 1, "dfc_test": 1}
    builders = prepare_world(work / "world", work / "tfds", params)
    files = sorted(str(p) for p in (work / "world" / "sen12ms").rglob("*_s2_*.tif"))

    results = {}
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        for crop in (128, 256):
            ours, theirs = [], []
            for _ in range(args.repeats):
                ours.append(run_tfds(builders["sen12ms"], crop, args.samples))
                theirs.append(run_rasterio(pool, files, crop, args.samples))
            results[crop] = (statistics.median(ours), statistics.median(theirs))
    line = {
        "bench": "input_pipeline",
        "what": "S1+S2 samples/s, per-sample-max normalised, aligned random crop, batch 32",
        "ours_128": round(results[128][0], 1),
        "rasterio_128": round(results[128][1], 1),
        "ratio": round(results[128][0] / results[128][1], 2),
        "ours_256": round(results[256][0], 1),
        "rasterio_256": round(results[256][1], 1),
        "ratio_256": round(results[256][0] / results[256][1], 2),
        "repeats": args.repeats,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
