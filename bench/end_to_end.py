"""End-to-end pre-training pairs/s (input + step): sslrs_tf against PyTorch fed by a rasterio DataLoader.

Both train Dual-SimCLR ResNet-18 (bench/train_step.py's ``simclr_resnet18`` step: 128 px
crops, batch 16, Adam) on the same synthetic 256 px SEN12MS patches, in one run:

* ours: ``make_dataset`` on the TFDS build of the patches (stateless shuffle, aligned random
  crop, per-sample-max normalisation) into ``DualSimCLR.fit``;
* theirs: a ``torch.utils.data.DataLoader(num_workers=2, shuffle=True)`` whose dataset opens
  each sample's s1, s2 and lc GeoTIFFs with rasterio, crops and normalises in NumPy
  (bench/input_pipeline.py's research-style reader), into the same step in PyTorch.

Each side's time per batch includes waiting for its input; both share the machine's cores
between reading and training, as a user's run does. Runs alternate; medians of the repeats.
Skipped (with a JSON line) where torch is absent.

    python bench/end_to_end.py [--patches 256] [--steps 12] [--repeats 3]   # ~6 minutes

Prints one JSON line; ``ratio`` is ours / PyTorch's pairs/s.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import sslrs_tf  # noqa: E402,F401  (its TF settings must come before TensorFlow loads)

from bench.input_pipeline import research_style_sample, synthetic_sen12ms  # noqa: E402
from bench.train_step import CASES, fit_step_times, keras_method, torch_step  # noqa: E402

CASE = CASES["simclr_resnet18"]


class RasterioPairs:
    """The research code's dataset: item i opens patch i's GeoTIFFs (a torch ``Dataset``)."""

    def __init__(self, files, crop):
        self.files, self.crop = files, crop

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        import torch

        s1, s2 = research_style_sample((self.files[index], self.crop, index))
        return torch.from_numpy(s1), torch.from_numpy(s2)


def ours(builder, steps):
    """Pairs/s of make_dataset into DualSimCLR.fit."""
    from sslrs_tf.data.pipeline import make_dataset

    dataset = make_dataset(builder, "train", crop_size=CASE.size, batch_size=CASE.batch, shuffle_buffer=64)
    times = fit_step_times(keras_method(CASE), dataset, steps)
    return CASE.batch * len(times) / sum(times)  # input stalls count: total time, not the median


def theirs(files, steps, warmup=2):
    """Pairs/s of the DataLoader into the PyTorch step."""
    import torch

    loader = torch.utils.data.DataLoader(RasterioPairs(files, CASE.size), batch_size=CASE.batch, shuffle=True,
                                         num_workers=2, drop_last=True, persistent_workers=True,
                                         multiprocessing_context="spawn")  # TF is loaded here: no fork
    step = torch_step(CASE)

    def endless():  # epoch after epoch, as a training loop does
        while True:
            yield from loader

    times, batches = [], endless()
    for i in range(warmup + steps):
        start = time.perf_counter()
        s1, s2 = next(batches)
        step(s1.contiguous(memory_format=torch.channels_last), s2.contiguous(memory_format=torch.channels_last))
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return CASE.batch * len(times) / sum(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12, help="batches timed per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None, help="folder for the synthetic files (default: a temp folder)")
    args = parser.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print(json.dumps({"bench": "end_to_end", "skipped": "torch is not installed (pip install torch==2.13.0)"}))
        return

    builder, files = synthetic_sen12ms(args.work, args.patches, "bench_e2e_")
    a, b = [], []
    for _ in range(args.repeats):
        a.append(ours(builder, args.steps))
        b.append(theirs(files, args.steps))
    a, b = statistics.median(a), statistics.median(b)
    print(json.dumps({"bench": "end_to_end", "what": f"{CASE.what}, from the files, input included",
                      "ours": round(a, 2), "pytorch_rasterio_dataloader": round(b, 2), "ratio": round(a / b, 2),
                      "repeats": args.repeats, "machine": f"{platform.machine()}, {os.cpu_count()} cores"}))


if __name__ == "__main__":
    main()
