"""Why sslrs_tf turns TensorFlow's oneDNN kernels on: Dual-SimCLR training pairs/s with and without them.

TensorFlow enables oneDNN by default only on some Intel CPUs; ``import sslrs_tf``
sets ``TF_ENABLE_ONEDNN_OPTS=1`` unless the variable is already set. The
setting is read once, when TensorFlow loads, so each measurement runs
``bench/train_step.py --ours-only`` in a fresh process, alternating on/off.

    python bench/onednn.py [--backbone resnet18] [--repeats 3]   # ~1 min per process

Prints one JSON line; ``ratio`` is pairs/s with oneDNN / without.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).with_name("train_step.py")


def rate(onednn, backbone):
    """Pairs/s of one fresh process with TF_ENABLE_ONEDNN_OPTS set to `onednn`."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}
    out = subprocess.run([sys.executable, str(SCRIPT), "--ours-only", "--backbones", backbone, "--repeats", "1"],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["ours"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    on, off = [], []
    for _ in range(args.repeats):
        on.append(rate(True, args.backbone))
        off.append(rate(False, args.backbone))
    print(json.dumps({
        "bench": "onednn",
        "what": f"Dual-SimCLR {args.backbone} training pairs/s, 128 px, batch 16, fp32: TF_ENABLE_ONEDNN_OPTS=1 vs 0",
        "onednn": statistics.median(on), "default_kernels": statistics.median(off),
        "ratio": round(statistics.median(on) / statistics.median(off), 2),
        "repeats": args.repeats, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }))


if __name__ == "__main__":
    main()
