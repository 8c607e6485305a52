"""Input pipeline samples/s: the TFDS pipeline against per-sample rasterio reading (research code style).

Both read the same synthetic 256 x 256 px SEN12MS patches, in one run, and
produce the same thing: batches of S1 + S2, per-sample-max normalised, with a
random crop aligned across the two. Ours reads them from the SEN12MS build made
for pre-training (config ``labels: false``: S1 and S2 without the lc labels). The research code's loader opens the s1,
s2 and lc GeoTIFFs of every sample at every step (lc even for pre-training),
reads only the crop's window of each, normalises in NumPy and collates; here its
reading is rewritten step for step (``research_style_sample``) and runs on 2
workers (processes and, separately, threads; the faster is the baseline), as a
``DataLoader(num_workers=2)`` would on this 2-core machine. Ours runs in a
process of its own with the malloc settings every command sets
(``sslrs_tf.malloc``); the baselines run on glibc's defaults, as the research
code does. Runs alternate (A, B, A, B, ...) and medians are reported, because this
machine's throughput drifts by 20-35 % from run to run.

    python bench/input_pipeline.py [--patches 256] [--repeats 3]

Prints one JSON line; ``ratio`` is ours / theirs at 128 px crops (the
pre-training crop), ``ratio_256`` at full 256 px patches; ``malloc_settings_ratio``
is ours with the malloc settings / ours without them, at 128 px.
"""

import argparse
import json
import multiprocessing
import multiprocessing.pool
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import sslrs_tf  # noqa: E402,F401  (its TF settings must come before TensorFlow loads)
from bench.machine import describe  # noqa: E402
from sslrs_tf.malloc import keep_freed_memory  # noqa: E402

BATCH = 32


def research_style_sample(args):
    """One sample as the research code's ``DFCDataset`` loads it: the crop's offsets drawn first, then only
    that window read from each of the sample's three GeoTIFFs (s1, s2, and lc, which it opens even for
    pre-training) with ``rasterio.windows.Window``, NaN and clipping, each channel divided by the window's
    maximum, in NumPy."""
    import rasterio
    from rasterio.windows import Window

    s2_path, crop, seed = args
    rng = np.random.default_rng(seed)
    s1_path = s2_path.replace("_s2_", "_s1_").replace("/s2_", "/s1_")
    with rasterio.open(s1_path) as src:
        top, left = rng.integers(0, src.height - crop + 1, 2)
        window = Window(int(left), int(top), crop, crop)
        s1 = src.read(window=window).astype(np.float32)
    with rasterio.open(s2_path) as src:
        s2 = src.read(window=window).astype(np.float32)
    with rasterio.open(s2_path.replace("_s2_", "_lc_").replace("/s2_", "/lc_")) as src:
        src.read(window=window)
    s1 = np.clip(np.nan_to_num(s1, nan=-25), -25, 0) + 25
    s1 /= np.maximum(s1.max(axis=(1, 2), keepdims=True), 1e-12)
    s2 = np.clip(s2, 0, 10000)
    s2 /= np.maximum(s2.max(axis=(1, 2), keepdims=True), 1e-12)
    return s1, s2


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


def run_tfds(data_dir, crop, samples):
    """Samples/s of sslrs_tf's pipeline on the built dataset in `data_dir` (after three warm-up batches)."""
    import tensorflow_datasets as tfds

    from sslrs_tf.data.pipeline import make_dataset

    builder = tfds.builder_from_directory(data_dir)
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


def synthetic_sen12ms(work, patches, prefix, labels=True):
    """SEN12MS of `patches` synthetic 256 px patches under `work` (a temp folder if None), written and
    built once: its TFDS builder, and the paths of its S2 GeoTIFFs (the research-style reader's input).
    `labels` False: the builder of its ``labels: false`` build (S1 and S2 only, as pre-training reads)."""
    from sslrs_tf.datasets import build, prepare_world, synthetic_config

    work = pathlib.Path(work or tempfile.mkdtemp(prefix=prefix))
    params = {"patches": patches, "size": 256, "seed": 0, "dfc_validation": 1, "dfc_test": 1}
    builder = prepare_world(work / "world", work / "tfds", params)["sen12ms"]
    if not labels:
        config = synthetic_config(256)
        config = {**config, "name": config["name"] + "_unlabelled", "labels": False}
        builder = build("sen12ms", work / "world" / "sen12ms", work / "tfds", config)
    return builder, sorted(str(p) for p in (work / "world" / "sen12ms").rglob("*_s2_*.tif"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=256)
    parser.add_argument("--samples", type=int, default=1024, help="samples timed per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None, help="folder for the synthetic files (default: a temp folder)")
    args = parser.parse_args()

    # Ours reads the build without the lc labels, as pre-training does (data.config: unlabelled); the
    # research code's reader opens the lc file too.
    builder, files = synthetic_sen12ms(args.work, args.patches, "bench_input_", labels=False)

    results = {}
    # Two ways to run the research-style reader on 2 cores; the faster one is the
    # baseline, so the ratio is not flattered by a weak reader. Processes pay for
    # pickling each sample back; threads share memory (rasterio and NumPy release the GIL).
    # Ours in a process of its own that sets malloc as every command does before TensorFlow starts
    # (keep_freed_memory), so that the baselines here keep glibc's defaults.
    spawn = multiprocessing.get_context("spawn")
    # Ours also without those settings, in another process: what they are worth, in the same run.
    with spawn.Pool(1, initializer=keep_freed_memory) as own, spawn.Pool(1) as own_default, spawn.Pool(2) as procs, \
            multiprocessing.pool.ThreadPool(2) as threads:
        for crop in (128, 256):
            ours, ours_default, by_procs, by_threads = [], [], [], []
            for _ in range(args.repeats):
                ours.append(own.apply(run_tfds, (builder.data_dir, crop, args.samples)))
                ours_default.append(own_default.apply(run_tfds, (builder.data_dir, crop, args.samples)))
                by_procs.append(run_rasterio(procs, files, crop, args.samples))
                by_threads.append(run_rasterio(threads, files, crop, args.samples))
            results[crop] = {
                "ours": statistics.median(ours),
                "ours_default_malloc": statistics.median(ours_default),
                "processes": statistics.median(by_procs),
                "threads": statistics.median(by_threads),
            }
            results[crop]["theirs"] = max(results[crop]["processes"], results[crop]["threads"])
    line = {"bench": "input_pipeline",
            "what": "S1+S2 samples/s, per-sample-max normalised, aligned random crop, batch 32"}
    for crop in (128, 256):
        r = results[crop]
        line.update({f"ours_{crop}": round(r["ours"], 1),
                     f"ours_default_malloc_{crop}": round(r["ours_default_malloc"], 1),
                     f"rasterio_processes_{crop}": round(r["processes"], 1),
                     f"rasterio_threads_{crop}": round(r["threads"], 1)})
    line["ratio"] = round(results[128]["ours"] / results[128]["theirs"], 2)
    line["ratio_256"] = round(results[256]["ours"] / results[256]["theirs"], 2)
    line["malloc_settings_ratio"] = round(results[128]["ours"] / results[128]["ours_default_malloc"], 2)
    line.update({"repeats": args.repeats, "machine": describe()})
    print(json.dumps(line))


if __name__ == "__main__":
    main()
