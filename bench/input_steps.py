"""Where the input pipeline's time goes: samples/s after each step, and what XLA fusion buys.

Reads the same synthetic 256 px SEN12MS shards as ``input_pipeline.py`` and
times, in one run, batches of 32 whole patches through growing prefixes of the
work: reading the records, parsing and decoding them, casting S2 to float32, and
normalising both modalities the way the first version of the pipeline did
(unfused, maxima from the whole patch). Then it times the ``per_patch_max``
normalisation (whole-patch maxima passed in, as the pipeline reads them from the
builders' stored ``s1_max``/``s2_max``) of one decoded batch with and without XLA,
and, with XLA, the ``per_sample_max`` normalisation of a batch of 128 px S2 crops as the
library writes it (the per-channel passes over rows of 64 pixels) against the same ops on
pixels of 13 channels (``pixels_layout``, written out below).

    python bench/input_steps.py [--patches 256]

Prints one JSON line; ``ratio`` is the per-batch speed-up of XLA fusion, ``rows_ratio`` that of
the rows of pixels.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import sslrs_tf  # noqa: E402,F401  (its TF settings must come before TensorFlow loads)
from bench.machine import describe  # noqa: E402

import tensorflow as tf  # noqa: E402

BATCH, SIZE = 32, 256


def rate(files, fn, batches=20):
    """Samples/s of `fn` mapped over batches of serialized records."""
    ds = tf.data.TFRecordDataset(files).repeat().batch(BATCH)
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
    it = iter(ds)
    for _ in range(3):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return BATCH * batches / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None, help="folder for the synthetic files (default: a temp folder)")
    args = parser.parse_args()

    from sslrs_tf.data.normalization import Normalization, raw_channel_max
    from sslrs_tf.datasets import prepare_world

    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_input_"))
    params = {"patches": args.patches, "size": SIZE, "seed": 0, "dfc_validation": 1, "dfc_test": 1}
    builder = prepare_world(work / "world", work / "tfds", params)["sen12ms"]
    files = [os.fspath(f) for f in builder.info.splits["train"].filepaths]
    spec = {k: tf.io.FixedLenFeature([], tf.string) for k in ("s1", "s2")}
    # per_patch_max: this bench passes whole-patch maxima (raw_max), which per_sample_max (the
    # maxima of the crop itself, + 1e-5) refuses; the per-pixel work timed is the same.
    norm = Normalization("per_patch_max")

    def decode(r):
        p = tf.io.parse_example(r, spec)
        s1 = tf.reshape(tf.io.decode_raw(p["s1"], tf.float32), [-1, SIZE, SIZE, 2])
        s2 = tf.reshape(tf.io.decode_raw(p["s2"], tf.uint16), [-1, SIZE, SIZE, 13])
        return s1, s2

    def unfused_whole_patch(s1, s2):
        # The first version: float32 of the whole patch, clip, maxima, divide, in separate passes.
        s1 = tf.clip_by_value(tf.where(tf.math.is_nan(s1), -25.0, s1), -25.0, 0.0) + 25.0
        s2 = tf.clip_by_value(tf.cast(s2, tf.float32), 0.0, 10000.0)
        return tuple(tf.math.divide_no_nan(x, tf.reduce_max(x, axis=[1, 2], keepdims=True)) for x in (s1, s2))

    steps = {
        "read": lambda r: r,
        "parse_decode": decode,
        "cast_s2": lambda r: tf.cast(decode(r)[1], tf.float32),
        "unfused_normalise": lambda r: unfused_whole_patch(*decode(r)),
    }
    rates = {name: statistics.median(rate(files, fn) for _ in range(args.repeats)) for name, fn in steps.items()}

    s1, s2 = next(iter(tf.data.TFRecordDataset(files).batch(BATCH).map(decode)))
    m1, m2 = raw_channel_max(s1), raw_channel_max(s2)

    def normalise(a, b, ma, mb):
        return norm(a, "s1", raw_max=ma), norm(b, "s2", raw_max=mb)

    times = {}
    for jit in (False, True):
        fn = tf.function(normalise, jit_compile=jit)
        fn(s1, s2, m1, m2)
        runs = []
        for _ in range(5 * args.repeats):
            start = time.perf_counter()
            out = fn(s1, s2, m1, m2)
            out[1].numpy()
            runs.append(time.perf_counter() - start)
        times[jit] = statistics.median(runs)
    # per_sample_max of S2 crops, XLA: the library's rows of 64 pixels against the per-pixel layout.
    def pixels_layout(x):
        x = tf.minimum(x, tf.constant(10000, x.dtype))
        peak = tf.cast(tf.reduce_max(x, axis=[-3, -2]), tf.float32)
        return tf.cast(x, tf.float32) * (1.0 / (peak + 1e-5))[:, None, None, :]

    crops = s2[:, :128, :128]
    layouts = {"rows": tf.function(lambda x: Normalization("per_sample_max")(x, "s2"), jit_compile=True),
               "pixels": tf.function(pixels_layout, jit_compile=True)}
    assert (layouts["rows"](crops).numpy() == layouts["pixels"](crops).numpy()).all()  # the same values
    crop_times = {name: [] for name in layouts}
    for _ in range(5 * args.repeats):
        for name, fn in layouts.items():  # alternating
            start = time.perf_counter()
            fn(crops).numpy()
            crop_times[name].append(time.perf_counter() - start)
    crop_times = {name: statistics.median(runs) for name, runs in crop_times.items()}
    line = {
        "bench": "input_steps",
        "what": "samples/s of 256 px S1+S2 batches of 32 after each step; ms per batch to normalise with and without XLA",
        **{k: round(v, 1) for k, v in rates.items()},
        "normalise_ms": round(times[False] * 1000, 1),
        "normalise_xla_ms": round(times[True] * 1000, 1),
        "ratio": round(times[False] / times[True], 2),
        "s2_crops_pixels_ms": round(crop_times["pixels"] * 1000, 2),
        "s2_crops_rows_ms": round(crop_times["rows"] * 1000, 2),
        "rows_ratio": round(crop_times["pixels"] / crop_times["rows"], 2),
        "machine": describe(),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
