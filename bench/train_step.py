"""Dual-SimCLR training pairs/s: sslrs_tf (Keras on TF) against the same step in PyTorch.

Both train two ResNets (S1: 2 channels, S2: 13 channels) with an MLP head each
and NT-Xent (temperature 0.07) with Adam, on the same random 128 px batches, in
one run, alternating A/B and reporting medians. PyTorch runs the CPU build with
channels-last tensors and 2 threads; its ResNets are those of tests/torch_reference.py,
torchvision's layout (torchvision has no CPU build on this machine), which the
conversion tests show compute what ours compute. Skipped
(with a JSON line saying so) where torch is absent: ``pip install torch==2.13.0``.

    python bench/train_step.py [--backbones resnet18 resnet50] [--batch 16] [--steps 5] [--repeats 3]

Prints one JSON line per backbone; ``ratio`` is ours / PyTorch's pairs/s.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import sslrs_tf  # noqa: E402,F401  (its TF settings must come before TensorFlow loads)

SIZE = 128


def keras_step_rate(backbone, batch, steps, precision="float32"):
    """Pairs/s of DualSimCLR.fit on a cached batch (the library's real training path)."""
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(precision)

    from sslrs_tf.methods import DualSimCLR
    from sslrs_tf.training.optimizers import FusedAdam

    rng = np.random.default_rng(0)
    data = {"s1": rng.random((batch, SIZE, SIZE, 2), np.float32), "s2": rng.random((batch, SIZE, SIZE, 13), np.float32)}
    ds = tf.data.Dataset.from_tensors(data).repeat()
    keras.utils.set_random_seed(0)
    model = DualSimCLR(backbone)
    model.l2_penalty = 1e-4  # PyTorch's Adam(weight_decay=1e-4), as on the other side
    model.compile(optimizer=FusedAdam(3e-5), jit_compile=False)
    model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # trace and warm up
    times = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch_index, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch_index, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[Clock()])
    return batch / statistics.median(times)


def torch_step_rate(backbone, batch, steps):
    """Pairs/s of the same step in PyTorch."""
    import torch
    from torch import nn

    from tests.torch_reference import ResNet  # torchvision's layout, the one the conversion tests check ours against

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)

    def nt_xent(a, b, t=0.07):
        z = nn.functional.normalize(torch.cat([a, b]), dim=1)
        logits = z @ z.T / t
        n = len(a)
        logits = logits - 1e9 * torch.eye(2 * n)
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
        return nn.functional.cross_entropy(logits, target)

    s1_net = ResNet(backbone, 2).to(memory_format=torch.channels_last)
    s2_net = ResNet(backbone, 13).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(list(s1_net.parameters()) + list(s2_net.parameters()), lr=3e-5, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    s1 = torch.from_numpy(rng.random((batch, 2, SIZE, SIZE), np.float32)).to(memory_format=torch.channels_last)
    s2 = torch.from_numpy(rng.random((batch, 13, SIZE, SIZE), np.float32)).to(memory_format=torch.channels_last)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = nt_xent(s1_net(s1), s2_net(s2))
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ours-only", action="store_true", help="only sslrs_tf's rate (used by bench/cpu_settings.py)")
    parser.add_argument("--precision", default="float32", help="Keras dtype policy of our side (with --ours-only)")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    if args.ours_only:
        for backbone in args.backbones:
            rates = [keras_step_rate(backbone, args.batch, args.steps, args.precision) for _ in range(args.repeats)]
            print(json.dumps({"backbone": backbone, "ours": round(statistics.median(rates), 2)}), flush=True)
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        print(json.dumps({"bench": "train_step", "skipped": "torch is not installed (pip install torch==2.13.0)"}))
        return
    for backbone in args.backbones:
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(keras_step_rate(backbone, args.batch, args.steps))
            theirs.append(torch_step_rate(backbone, args.batch, args.steps))
        line = {
            "bench": "train_step",
            "what": f"Dual-SimCLR {backbone} training pairs/s, 128 px, batch {args.batch}, Adam, fp32",
            "backbone": backbone,
            "ours": round(statistics.median(ours), 2),
            "pytorch": round(statistics.median(theirs), 2),
            "ratio": round(statistics.median(ours) / statistics.median(theirs), 2),
            "repeats": args.repeats,
            "machine": machine,
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
