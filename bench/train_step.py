"""Training pairs/s: sslrs_tf (Keras on TF) against the same step in PyTorch, with achieved FLOP/s.

Cases (``--cases``; all by default), each on the same random batches in one run, one step
of ours and one of PyTorch's in turn (ABBA), reporting the median step of each:

* ``simclr_resnet18``, ``simclr_resnet50``: Dual-SimCLR, two ResNets (S1: 2 channels,
  S2: 13) with an MLP head each, NT-Xent at 0.07, Adam (L2 1e-4), 128 px, batch 16;
* ``simclr_swin_t``: Dual-Swin-T as configs/dual_swin.yaml: no head, NT-Xent at 0.2 on the
  pooled 768-d vectors, Adam 5e-4, 224 px, batch 8;
* ``moco_resnet50``: MoCo-v2 with sensor-based pairs: S2 (10 bands) query and S1 key through
  trainable 1x1 adapters to 3 channels (configs/moco_sensor.yaml keeps them fixed), ResNet-50s
  and MLP necks, the key network following by momentum 0.999, a queue of 65 536 keys,
  temperature 0.2, SGD 0.03 with momentum 0.9 and L2 1e-4, 128 px, batch 16;
* ``simclr_resnet18_b200``: the first at the published batch of 200; ``moco_resnet50_b64``:
  MoCo at the MoCo work's batch of 64. 6 steps each.

PyTorch's allocator matters: with glibc's malloc (the default, what the research code runs
on) its per-pair rate falls as the batch grows; ``--torch-allocator jemalloc`` reruns the
comparison with jemalloc configured to keep freed memory (bench/machine.py's ``use_jemalloc``).

PyTorch runs the CPU build with 2 threads, ResNets channels-last; its networks are those of
tests/torch_reference.py (torchvision's ResNet layout, the original Swin), which the
conversion tests show compute what ours compute. Skipped (with a JSON line saying so) where
torch is absent: ``pip install torch==2.13.0``.

FLOPs per pair come from TensorFlow's profiler on our encoders' forward graphs (conv,
matmul and attention ops), times 3 for a trained network (forward, input and weight
gradients) and 2 for MoCo's key network (forward, and input gradients for its adapter).

    python bench/train_step.py [--cases simclr_resnet18 ...] [--batch N] [--steps 5] [--repeats 3]
                               [--torch-allocator glibc|jemalloc]

Prints one JSON line per case; ``ratio`` is ours / PyTorch's pairs/s, ``pair_ratio_quartiles``
the quartiles of the ratio of adjacent steps (how much one run's ratio can move). Ours is the
step function ``fit`` calls for each batch; ``--ours-only`` (bench/cpu_settings.py) runs ``fit``.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import sslrs_tf  # noqa: E402,F401  (its TF settings must come before TensorFlow loads)
from bench.machine import allocator, describe, use_jemalloc  # noqa: E402

#: the matrix-multiply peak of the reference 2-core CPU, GFLOP/s (../shared/NOTES.md)
PEAK_GFLOPS = 210


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmarked training step."""

    method: str  # "dual_simclr" or "moco_sensor"
    backbone: str
    size: int
    batch: int
    s2_channels: int = 13
    #: steps timed per side when set (large batches: a step takes 15-70 s), else --steps x --repeats
    pairs: int | None = None

    @property
    def what(self):
        name = {"dual_simclr": "Dual-SimCLR", "moco_sensor": "MoCo-v2 (sensor pairs)"}[self.method]
        return f"{name} {self.backbone} training pairs/s, {self.size} px, batch {self.batch}, fp32"


CASES = {
    "simclr_resnet18": Case("dual_simclr", "resnet18", 128, 16),
    "simclr_resnet50": Case("dual_simclr", "resnet50", 128, 16),
    "simclr_swin_t": Case("dual_simclr", "swin_t", 224, 8),
    "moco_resnet50": Case("moco_sensor", "resnet50", 128, 16, s2_channels=10),
    # The published Dual-SimCLR batch, and the largest MoCo batch (published: 256) at which both
    # sides fit in one process on 24 GiB: PyTorch's rate per pair falls as the batch grows.
    "simclr_resnet18_b200": Case("dual_simclr", "resnet18", 128, 200, pairs=6),
    "moco_resnet50_b64": Case("moco_sensor", "resnet50", 128, 64, s2_channels=10, pairs=6),
}


def batches(case):
    """The case's random S1 and S2 batch, channels last."""
    rng = np.random.default_rng(0)
    return {"s1": rng.random((case.batch, case.size, case.size, 2), np.float32),
            "s2": rng.random((case.batch, case.size, case.size, case.s2_channels), np.float32)}


def matmul_gflops(n=2048, repeats=20):
    """This run's float32 matrix-multiply rate (TensorFlow, all cores), GFLOP/s: the VM's speed today,
    beside the reference peak NOTES.md measured on a quieter day."""
    import tensorflow as tf

    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    product = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    product(a, b).numpy()
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeats):
            product(a, b).numpy()
        rates.append(2 * n**3 * repeats / (time.perf_counter() - start) / 1e9)
    return max(rates)


def forward_gflop(backbone, channels, size):
    """GFLOP of one image through our encoder, counted by TensorFlow's profiler on the frozen graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from sslrs_tf.models.encoders import make_encoder

    encoder = make_encoder(backbone, channels, False, size if backbone.startswith("swin") else None)
    spec = tf.TensorSpec([1, size, size, channels], tf.float32)
    graph = convert_variables_to_constants_v2(
        tf.function(lambda x: encoder(x, training=False)).get_concrete_function(spec)).graph
    options = {**tf.compat.v1.profiler.ProfileOptionBuilder.float_operation(), "output": "none"}
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops / 1e9


def gflop_per_pair(case):
    """Training GFLOP per S1/S2 pair (see the module docstring)."""
    if case.method == "moco_sensor":  # both encoders take the adapters' 3 channels; query ×3, key ×2
        return 5 * forward_gflop(case.backbone, 3, case.size)
    return 3 * (forward_gflop(case.backbone, 2, case.size) + forward_gflop(case.backbone, case.s2_channels, case.size))


def keras_method(case):
    """The case's method, compiled with its optimizer, as train.py builds it with ``model.fused_batch_norm: true``."""
    import keras

    from sslrs_tf.methods import DualSimCLR, MoCo
    from sslrs_tf.models.batch_norm import fuse_batch_norm
    from sslrs_tf.training.optimizers import FusedAdam, FusedSGD

    keras.utils.set_random_seed(0)
    if case.method == "moco_sensor":
        # Trainable adapters, as the PyTorch side trains them (the config's fixed ones skip the key's backward).
        model = MoCo(case.backbone, mode="sensor", s2_channels=case.s2_channels, adapter_trainable=True)
        model.l2_penalty, optimizer = 1e-4, FusedSGD(0.03, momentum=0.9)  # PyTorch's SGD(weight_decay=1e-4)
    elif case.backbone.startswith("swin"):
        model = DualSimCLR(case.backbone, projection_dim=None, temperature=0.2, image_size=case.size)
        optimizer = FusedAdam(5e-4)
    else:
        model = DualSimCLR(case.backbone)
        model.l2_penalty, optimizer = 1e-4, FusedAdam(3e-5)  # PyTorch's Adam(weight_decay=1e-4)
    fuse_batch_norm(model)  # model.fused_batch_norm: true (one replica)
    model.compile(optimizer=optimizer, jit_compile=False)
    return model


def fit_step_times(model, dataset, steps, warmup=2):
    """Seconds of each of `steps` batches of ``model.fit`` on `dataset` (input wait included), after
    `warmup` batches (tracing, tf.data's autotuning)."""
    import keras

    times = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch_index, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch_index, logs=None):
            if batch_index >= warmup:
                times.append(time.perf_counter() - self.start)

    model.fit(dataset, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[Clock()])
    return times


def keras_step_rate(case, steps, precision="float32"):
    """Pairs/s of the method's fit on a cached batch (the library's real training path)."""
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(precision)
    times = fit_step_times(keras_method(case), tf.data.Dataset.from_tensors(batches(case)).repeat(), steps)
    return case.batch / statistics.median(times)


def keras_stepper(case):
    """One training step of the method per call: the function ``fit`` runs for each batch, on a cached batch."""
    import tensorflow as tf

    model = keras_method(case)
    model.make_train_function()
    batches_ = iter(tf.data.Dataset.from_tensors(batches(case)).repeat())
    return lambda: float(model.train_function(batches_)["loss"])


def to_torch(case, array):
    """A channels-last NumPy batch as the NCHW tensor the case's PyTorch network takes (channels-last
    memory for ResNets)."""
    import torch

    layout = torch.contiguous_format if case.backbone.startswith("swin") else torch.channels_last
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous(memory_format=layout)


def torch_step(case):
    """The same training step in PyTorch: a function of the S1 and S2 batches (NCHW tensors)."""
    import torch
    from torch import nn

    from tests.torch_reference import ResNet, Swin

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    swin = case.backbone.startswith("swin")
    layout = torch.contiguous_format if swin else torch.channels_last

    if case.method == "moco_sensor":
        def network(channels):  # 1x1 adapter to 3 channels, ResNet, MLP neck (the ResNet's fc)
            adapter = nn.Sequential(nn.Conv2d(channels, 3, 1, bias=False), nn.BatchNorm2d(3), nn.ReLU())
            return adapter, ResNet(case.backbone, 3).to(memory_format=layout)

        q_adapter, q_net = network(case.s2_channels)
        k_adapter, k_net = network(2)
        k_net.load_state_dict(q_net.state_dict())
        for p in k_net.parameters():  # follows by momentum; its adapter is trained by gradient, as ours
            p.requires_grad_(False)
        params = [*q_adapter.parameters(), *q_net.parameters(), *k_adapter.parameters()]
        optimizer = torch.optim.SGD(params, lr=0.03, momentum=0.9, weight_decay=1e-4)
        queue = nn.functional.normalize(torch.randn(65536, 128), dim=1)
        state = {"ptr": 0}

        def step(s1, s2):
            optimizer.zero_grad(set_to_none=True)
            q = nn.functional.normalize(q_net(q_adapter(s2)), dim=1)
            k = nn.functional.normalize(k_net(k_adapter(s1)), dim=1)
            logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / 0.2
            nn.functional.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long)).backward()
            optimizer.step()
            with torch.no_grad():
                for pk, pq in zip(k_net.parameters(), q_net.parameters()):
                    pk.mul_(0.999).add_(pq, alpha=0.001)
                ptr = state["ptr"]
                queue[ptr:ptr + len(k)] = k.detach()
                state["ptr"] = (ptr + len(k)) % len(queue)
        return step

    def nt_xent(a, b, t):
        z = nn.functional.normalize(torch.cat([a, b]), dim=1)
        logits = z @ z.T / t
        n = len(a)
        logits = logits - 1e9 * torch.eye(2 * n)
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
        return nn.functional.cross_entropy(logits, target)

    if swin:  # no head: NT-Xent on the pooled features, Adam 5e-4 without decay
        s1_net, s2_net = Swin(case.backbone, 2, case.size), Swin(case.backbone, case.s2_channels, case.size)
        s1_f, s2_f, t = s1_net.features, s2_net.features, 0.2
        params = [p for n in (s1_net, s2_net) for name, p in n.named_parameters() if not name.startswith("head.")]
        optimizer = torch.optim.Adam(params, lr=5e-4)
    else:
        s1_f = ResNet(case.backbone, 2).to(memory_format=layout)
        s2_f = ResNet(case.backbone, case.s2_channels).to(memory_format=layout)
        t = 0.07
        optimizer = torch.optim.Adam([*s1_f.parameters(), *s2_f.parameters()], lr=3e-5, weight_decay=1e-4)

    def step(s1, s2):
        optimizer.zero_grad(set_to_none=True)
        nt_xent(s1_f(s1), s2_f(s2), t).backward()
        optimizer.step()
    return step


def torch_stepper(case):
    """One training step of the same step in PyTorch per call."""
    step, data = torch_step(case), batches(case)
    s1, s2 = to_torch(case, data["s1"]), to_torch(case, data["s2"])
    return lambda: step(s1, s2)


def paired_step_times(ours, theirs, pairs, warmup=2):
    """Seconds of `pairs` steps of each of two step functions, run alternately (ABBA order), after `warmup`
    steps of each: this VM's speed drifts by 10-20 % over minutes, and alternating single steps lets
    both sides see the same drift, where one side's run after the other's would not."""
    for _ in range(warmup):
        ours(), theirs()
    times = {"ours": [], "theirs": []}
    for i in range(pairs):
        for side in (("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")):
            start = time.perf_counter()
            (ours if side == "ours" else theirs)()
            times[side].append(time.perf_counter() - start)
    return times["ours"], times["theirs"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--batch", type=int, default=None, help="replaces each case's batch size")
    parser.add_argument("--steps", type=int, default=5, help="measured steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="steps x repeats steps of each side are timed")
    parser.add_argument("--ours-only", action="store_true", help="only sslrs_tf's rate (used by bench/cpu_settings.py)")
    parser.add_argument("--precision", default="float32", help="Keras dtype policy of our side (with --ours-only)")
    parser.add_argument("--torch-allocator", choices=("glibc", "jemalloc"), default="glibc",
                        help="jemalloc: rerun under LD_PRELOAD jemalloc (both sides share the process)")
    args = parser.parse_args()
    if args.torch_allocator == "jemalloc":
        use_jemalloc()
    machine = describe()
    if args.batch:
        for name in args.cases:
            CASES[name] = dataclasses.replace(CASES[name], batch=args.batch)
    if args.ours_only:
        for name in args.cases:
            rates = [keras_step_rate(CASES[name], args.steps, args.precision) for _ in range(args.repeats)]
            print(json.dumps({"case": name, "ours": round(statistics.median(rates), 2)}), flush=True)
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        print(json.dumps({"bench": "train_step", "skipped": "torch is not installed (pip install torch==2.13.0)"}))
        return
    peak_now = matmul_gflops()
    for name in args.cases:
        case = CASES[name]
        pairs = case.pairs or args.steps * args.repeats
        ours_t, theirs_t = paired_step_times(keras_stepper(case), torch_stepper(case), pairs)
        ours, theirs = case.batch / statistics.median(ours_t), case.batch / statistics.median(theirs_t)
        # The ratio of each adjacent pair of steps: its quartiles show how far one run's ratio can be trusted.
        quartiles = statistics.quantiles([t / o for o, t in zip(ours_t, theirs_t)], n=4)
        gflop = gflop_per_pair(case)
        print(json.dumps({
            "bench": "train_step", "case": name, "what": case.what,
            "ours": round(ours, 2), "pytorch": round(theirs, 2), "ratio": round(ours / theirs, 2),
            "pair_ratio_quartiles": [round(q, 2) for q in quartiles], "gflop_per_pair": round(gflop, 2),
            "ours_gflops": round(ours * gflop, 1), "pytorch_gflops": round(theirs * gflop, 1),
            "ours_of_peak": round(ours * gflop / PEAK_GFLOPS, 2),
            "peak_gflops": PEAK_GFLOPS, "matmul_gflops_now": round(peak_now), "steps": pairs,
            "allocator": allocator(), "machine": machine,
        }), flush=True)


if __name__ == "__main__":
    main()
