"""CPU settings of the training step: oneDNN kernels on/off, and mixed_bfloat16 against float32.

TensorFlow enables oneDNN by default only on some Intel CPUs; ``import sslrs_tf``
sets ``TF_ENABLE_ONEDNN_OPTS=1`` unless the variable is already set. The
setting is read once, when TensorFlow loads, so each measurement runs
``bench/train_step.py --ours-only`` (Dual-SimCLR, 128 px, batch 16) in a fresh
process, alternating A and B.

    python bench/cpu_settings.py [--backbone resnet18] [--repeats 3]   # ~10 min

Prints two JSON lines: ``onednn`` (``ratio`` = pairs/s with oneDNN / without)
and ``bfloat16`` (``ratio`` = mixed_bfloat16 / float32, both with oneDNN).
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


def rate(backbone, onednn=True, precision="float32"):
    """Pairs/s of one fresh process with TF_ENABLE_ONEDNN_OPTS set to `onednn`."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}
    out = subprocess.run([sys.executable, str(SCRIPT), "--ours-only", "--cases", f"simclr_{backbone}", "--repeats", "1",
                          "--steps", "3", "--precision", precision],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["ours"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("onednn", "bfloat16"), help="run one of the two comparisons")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    what = f"Dual-SimCLR {args.backbone} training pairs/s, 128 px, batch 16"
    pairs = {
        "onednn": (("onednn", {}), ("default_kernels", {"onednn": False})),
        "bfloat16": (("mixed_bfloat16", {"precision": "mixed_bfloat16"}), ("float32", {})),
    }
    for bench, ((name_a, a), (name_b, b)) in pairs.items():
        if args.only and bench != args.only:
            continue
        rates_a, rates_b = [], []
        for _ in range(args.repeats):
            rates_a.append(rate(args.backbone, **a))
            rates_b.append(rate(args.backbone, **b))
        ra, rb = statistics.median(rates_a), statistics.median(rates_b)
        print(json.dumps({"bench": bench, "what": f"{what}: {name_a} vs {name_b}", name_a: ra, name_b: rb,
                          "ratio": round(ra / rb, 2), "repeats": args.repeats, "machine": machine}), flush=True)

if __name__ == "__main__":
    main()
