"""Optimizer update cost: sslrs_tf's fused Adam/SGD against Keras' own, on a real model's variables.

Keras 3 builds Adam's update from ~12 graph ops per variable; ``FusedAdam`` calls TF's
one-op kernel (``sslrs_tf/training/optimizers.py``). This measures what that changes, on
the trainable variables of a Dual-SimCLR model, with fixed random gradients, inside one
``tf.function`` (as in a training step):

* ``trace_s``: tracing the update (paid once per run, and once per test that trains);
* ``first_call_s``: the first call (TF's graph optimisation of those ops);
* ``step_ms``: the median steady-state update.

    python bench/optimizer_apply.py [--backbone resnet10] [--repeats 3]   # about 1 minute

Each measurement runs in a fresh process (tracing caches would flatter the second),
alternating Keras and ours; prints one JSON line per optimizer with medians and
``ratio`` = Keras' step time / ours.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench.machine import describe  # noqa: E402


def measure(kind, name, backbone, steps=30):
    """One fresh-process measurement (run with --child): trace, first call and median step of one optimizer."""
    import numpy as np

    import sslrs_tf  # noqa: F401  (its TF settings must come before TensorFlow loads)
    import keras
    import tensorflow as tf

    from sslrs_tf.methods import DualSimCLR
    from sslrs_tf.training.optimizers import FusedAdam, FusedSGD

    keras.utils.set_random_seed(0)
    image_size = {"image_size": 32, "projection_dim": None} if backbone.startswith("swin") else {}
    variables = DualSimCLR(backbone, **image_size).trainable_variables
    make = {("keras", "adam"): lambda: keras.optimizers.Adam(1e-3), ("ours", "adam"): lambda: FusedAdam(1e-3),
            ("keras", "sgd"): lambda: keras.optimizers.SGD(0.03, momentum=0.9),
            ("ours", "sgd"): lambda: FusedSGD(0.03, momentum=0.9)}
    optimizer = make[kind, name]()
    optimizer.build(variables)
    rng = np.random.default_rng(0)
    grads = [tf.constant(rng.normal(size=v.shape).astype("float32")) for v in variables]
    update = tf.function(lambda: optimizer.apply(grads, variables))
    start = time.perf_counter()
    update.get_concrete_function()
    trace = time.perf_counter() - start
    start = time.perf_counter()
    update()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        update()
        times.append(time.perf_counter() - start)
    return {"variables": len(variables), "trace_s": trace, "first_call_s": first, "step_ms": 1000 * statistics.median(times)}


def child(kind, name, backbone):
    out = subprocess.run([sys.executable, __file__, "--child", kind, name, "--backbone", backbone],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet10")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "OPTIMIZER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args.backbone)))
        return
    for name in ("adam", "sgd"):
        runs = {"keras": [], "ours": []}
        for _ in range(args.repeats):
            for kind in runs:
                runs[kind].append(child(kind, name, args.backbone))
        median = {kind: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for kind, rs in runs.items()}
        line = {"bench": "optimizer_apply", "optimizer": name, "backbone": args.backbone,
                "variables": int(median["ours"]["variables"])}
        for kind in runs:
            for key in ("trace_s", "first_call_s", "step_ms"):
                line[f"{kind}_{key}"] = round(median[kind][key], 3)
        line["ratio"] = round(median["keras"]["step_ms"] / median["ours"]["step_ms"], 2)
        line["ratio_trace_and_first_call"] = round(
            (median["keras"]["trace_s"] + median["keras"]["first_call_s"])
            / (median["ours"]["trace_s"] + median["ours"]["first_call_s"]), 2)
        line["repeats"] = args.repeats
        line["machine"] = describe()
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
