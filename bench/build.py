"""Dataset build samples/s: the SEN12MS builder's plain build (one Python process) against the same builder on
Apache Beam's local runner with 2 worker processes, on the same synthetic files, in one run.

The plain build is what ``tfds build tfds_builders/sen12ms`` does without Beam options; the Beam build is
``tfds build … --beam_pipeline_options="runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"``
(the same builder, the same records). Each is timed from the start of ``download_and_prepare`` to its end, Beam's
worker start-up included; runs alternate (plain, Beam, plain, ...) and medians are reported.

    python bench/build.py [--patches 600] [--repeats 1]

Prints one JSON line; ``ratio`` is Beam / plain samples/s.
"""

import argparse
import json
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import sslrs_tf  # noqa: E402,F401  (its TF settings must come before TensorFlow loads)
from bench.machine import describe  # noqa: E402

TWO_PROCESSES = ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def timed_build(manual_dir, data_dir, beam):
    """Builds SEN12MS (256 px, all seasons) from `manual_dir` into a fresh `data_dir`; returns (seconds, builder)."""
    import tensorflow_datasets as tfds
    from apache_beam.options.pipeline_options import PipelineOptions

    from tfds_builders.sen12ms import Builder, Sen12msConfig

    shutil.rmtree(data_dir, ignore_errors=True)
    builder = Builder(config=Sen12msConfig(name="bench"), data_dir=str(data_dir))
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir),
                                          beam_options=PipelineOptions(TWO_PROCESSES) if beam else None)
    start = time.perf_counter()
    builder.download_and_prepare(download_config=config)
    return time.perf_counter() - start, builder


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=600, help="synthetic 256 px SEN12MS triplets")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", default=None, help="folder for the synthetic files (default: a temp folder)")
    args = parser.parse_args()

    from sslrs_tf.data import synthetic

    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_build_"))
    manual = work / "sen12ms"
    if not manual.is_dir():
        synthetic.generate_sen12ms(manual, args.patches, 256, seed=0)
    times = {"plain": [], "beam": []}
    built = {}
    for _ in range(args.repeats):
        for name in ("plain", "beam"):
            seconds, builder = timed_build(manual, work / f"tfds_{name}", name == "beam")
            times[name].append(seconds)
            built[name] = {split: info.num_examples for split, info in builder.info.splits.items()}
    if built["plain"] != built["beam"]:
        raise SystemExit(f"the two builds differ: {built}")
    samples = sum(built["plain"].values())
    rate = {name: samples / statistics.median(t) for name, t in times.items()}
    print(json.dumps({
        "bench": "build", "what": "SEN12MS 256 px triplets built per second (s1+s2+lc read, encoded, written)",
        "samples": samples, "plain": round(rate["plain"], 1), "beam_2_processes": round(rate["beam"], 1),
        "seconds_plain": [round(t, 1) for t in times["plain"]], "seconds_beam": [round(t, 1) for t in times["beam"]],
        "ratio": round(rate["beam"] / rate["plain"], 2), "repeats": args.repeats, "machine": describe(),
    }))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
