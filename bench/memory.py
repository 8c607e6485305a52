"""Peak memory of building SEN12MS and of training on it, with 200 and with 2 000 patches.

Neither may grow with the dataset. Our builder streams samples from the GeoTIFFs; TFDS's
writer then shuffles the serialized records in memory up to 1 GB (``MAX_MEM_BUFFER_SIZE``)
and spills to on-disk buckets beyond, so a build's peak is the builder's own memory plus the
records, capped at 1 GB: both are reported. Training holds one shuffle block of
``data.shuffle_buffer`` records; set here to 128, fewer than either dataset's split, so
what remains is what could grow with the dataset. Each measurement is a fresh process, and its
peak resident memory (``ru_maxrss`` of that one child, from ``os.wait4``) is reported:

* build: ``python -m sslrs_tf.datasets sen12ms`` (the real command line) on a synthetic
  world of N patches written beforehand, into an empty folder;
* train: ``train.py`` with configs/tiny.yaml (Dual-SimCLR ResNet-10, 32 px crops, batch 8)
  on that build, two epochs of ``--train-steps`` steps, ``data.shuffle_buffer=128``.

    python bench/memory.py [--small 200] [--large 2000] [--size 64] [--train-steps 15]   # ~5 minutes

Prints one JSON line; ``ratio`` is the large build's peak less its records over the small
one's (``train_ratio``: the training peaks): 1.0 means it does not grow.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import describe  # noqa: E402


def peak_mb(cmd):
    """Peak resident memory (MB) of `cmd` run as a child process; fails with its stderr if it fails."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # os.wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over all children).
    # Read stderr in a thread so a chatty child cannot fill the pipe and block.
    import threading

    err = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()))
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{err[0][-3000:]}")
    return usage.ru_maxrss / 1024  # KiB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64, help="patch side of the synthetic world, px")
    parser.add_argument("--train-steps", type=int, default=15, help="steps per epoch (two epochs)")
    parser.add_argument("--work", default=None, help="folder for the synthetic files (default: a temp folder)")
    args = parser.parse_args()
    from sslrs_tf.data import synthetic

    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_memory_"))
    line = {"bench": "memory", "what": f"peak RSS (MB) building SEN12MS from N synthetic {args.size} px patches, "
                                       f"and training tiny.yaml 2 x {args.train_steps} steps on it"}
    for n in (args.small, args.large):
        world, tfds_dir = work / f"world{n}", work / f"tfds{n}"
        if not (world / "world.json").exists():
            synthetic.generate(world, patches=n, size=args.size, seed=0, dfc_validation=1, dfc_test=1)
        config = json.dumps({"name": f"synthetic{args.size}", "patch_size": args.size})
        for old in (tfds_dir, work / f"run{n}"):  # measure a fresh build and a fresh run
            shutil.rmtree(old, ignore_errors=True)
        line[f"build_{n}_mb"] = round(peak_mb([sys.executable, "-m", "sslrs_tf.datasets", "sen12ms",
                                               "--manual_dir", str(world / "sen12ms"), "--data_dir", str(tfds_dir),
                                               "--config", config]), 1)
        line[f"records_{n}_mb"] = round(sum(f.stat().st_size for f in tfds_dir.rglob("*.tfrecord*")) / 2**20, 1)
        # DFC2020 too (not measured), so that train.py finds both built and only trains.
        subprocess.run([sys.executable, "-m", "sslrs_tf.datasets", "dfc2020", "--manual_dir", str(world / "dfc2020"),
                        "--data_dir", str(tfds_dir), "--config", config], cwd=ROOT, check=True, capture_output=True)
        line[f"train_{n}_mb"] = round(peak_mb([
            sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "tiny.yaml"),
            f"run.dir={work / f'run{n}'}", "data.source=synthetic", f"data.synthetic.dir={world}",
            f"data.data_dir={tfds_dir}", f"data.synthetic.patches={n}", f"data.synthetic.size={args.size}",
            "data.synthetic.dfc_validation=1", "data.synthetic.dfc_test=1", "train.epochs=2",
            f"train.steps_per_epoch={args.train_steps}", "data.validation_split=null", "data.shuffle_buffer=128"]), 1)
    own = {n: line[f"build_{n}_mb"] - line[f"records_{n}_mb"] for n in (args.small, args.large)}
    line["ratio"] = round(own[args.large] / own[args.small], 2)
    line["train_ratio"] = round(line[f"train_{args.large}_mb"] / line[f"train_{args.small}_mb"], 2)
    line["machine"] = describe()
    print(json.dumps(line))


if __name__ == "__main__":
    main()
