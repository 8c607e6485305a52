"""CPU settings of the training step: oneDNN kernels on/off, mixed_bfloat16 against float32, jemalloc against glibc.

TensorFlow enables oneDNN by default only on some Intel CPUs; ``import sslrs_tf``
sets ``TF_ENABLE_ONEDNN_OPTS=1`` unless the variable is already set. The
setting is read once, when TensorFlow loads, so each measurement runs
``bench/train_step.py --ours-only`` (Dual-SimCLR, 128 px, batch 16 or ``--batch``) in a
fresh process, alternating A and B. jemalloc: does our step change on the allocator that
speeds PyTorch up (bench/machine.py)?

    python bench/cpu_settings.py [--backbone resnet18] [--batch 16] [--repeats 3] [--only NAME]   # ~15 min

Prints three JSON lines: ``onednn`` (``ratio`` = pairs/s with oneDNN / without),
``bfloat16`` (``ratio`` = mixed_bfloat16 / float32, both with oneDNN) and ``jemalloc``
(``ratio`` = with jemalloc preloaded, configured as bench/machine.py's ``JEMALLOC_CONF`` /
with glibc's malloc).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench.machine import describe, jemalloc_env  # noqa: E402

SCRIPT = pathlib.Path(__file__).with_name("train_step.py")


def rate(backbone, batch, onednn=True, precision="float32", jemalloc=False):
    """Pairs/s of one fresh process with TF_ENABLE_ONEDNN_OPTS set to `onednn`, on jemalloc if `jemalloc`."""
    env = {**(jemalloc_env() if jemalloc else os.environ), "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}
    out = subprocess.run([sys.executable, str(SCRIPT), "--ours-only", "--cases", f"simclr_{backbone}", "--repeats", "1",
                          "--steps", "3", "--precision", precision, "--batch", str(batch)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["ours"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--only", choices=("onednn", "bfloat16", "jemalloc"), help="run one of the comparisons")
    args = parser.parse_args()
    machine = describe()
    what = f"Dual-SimCLR {args.backbone} training pairs/s, 128 px, batch {args.batch}"
    pairs = {
        "onednn": (("onednn", {}), ("default_kernels", {"onednn": False})),
        "bfloat16": (("mixed_bfloat16", {"precision": "mixed_bfloat16"}), ("float32", {})),
        "jemalloc": (("jemalloc", {"jemalloc": True}), ("glibc", {})),
    }
    for bench, ((name_a, a), (name_b, b)) in pairs.items():
        if args.only and bench != args.only:
            continue
        if bench == "jemalloc" and jemalloc_env() is None:
            print(json.dumps({"bench": bench, "skipped": "libjemalloc not found (apt-get install libjemalloc2)"}))
            continue
        rates_a, rates_b = [], []
        for _ in range(args.repeats):
            rates_a.append(rate(args.backbone, args.batch, **a))
            rates_b.append(rate(args.backbone, args.batch, **b))
        ra, rb = statistics.median(rates_a), statistics.median(rates_b)
        print(json.dumps({"bench": bench, "what": f"{what}: {name_a} vs {name_b}", name_a: ra, name_b: rb,
                          "ratio": round(ra / rb, 2), "repeats": args.repeats, "machine": machine}), flush=True)


if __name__ == "__main__":
    main()
