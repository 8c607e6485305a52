"""End-to-end pre-training pairs/s (input + step): sslrs_tf against PyTorch fed by a rasterio DataLoader.

Both train Dual-SimCLR ResNet-18 (bench/train_step.py's ``simclr_resnet18`` step: 128 px
crops, Adam) at the published batch of 200 pairs (``--batch``) on the same synthetic 256 px
SEN12MS patches, in one run:

* ours: ``make_dataset`` on the TFDS build of the patches (stateless shuffle, aligned random
  crop, per-sample-max normalisation) into ``DualSimCLR.fit``;
* theirs: a ``torch.utils.data.DataLoader(num_workers=2)`` over a shuffling sampler, whose
  dataset opens each sample's s1, s2 and lc GeoTIFFs with rasterio, crops and normalises in
  NumPy (bench/input_pipeline.py's research-style reader), into the same step in PyTorch.
  The sampler draws epoch after epoch of shuffled indices as one stream: a few hundred
  synthetic patches hold only a couple of batches of 200, and restarting the loader at each
  of those short epochs would stall its workers where a real epoch (903 batches) does not.

Each side's time per batch includes waiting for its input; both share the machine's cores
between reading and training, as a user's run does. Runs alternate; medians of the repeats.
Skipped (with a JSON line) where torch is absent.

    python bench/end_to_end.py [--patches 512] [--batch 200] [--steps 4] [--repeats 3]
                               [--torch-allocator glibc|jemalloc]   # ~20 min, +4 to build the files

Prints one JSON line; ``ratio`` is ours / PyTorch's pairs/s.
"""

import argparse
import dataclasses
import json
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import sslrs_tf  # noqa: E402,F401  (its TF settings must come before TensorFlow loads)
from bench.machine import allocator, describe, use_jemalloc  # noqa: E402

from bench.input_pipeline import research_style_sample, synthetic_sen12ms  # noqa: E402
from bench.train_step import CASES, fit_step_times, keras_method, torch_step  # noqa: E402

#: the published Dual-SimCLR batch (SPEC: 200): the rate users of configs/dual_simclr.yaml get
PUBLISHED_BATCH = 200


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


def ours(case, builder, steps):
    """Pairs/s of make_dataset into DualSimCLR.fit."""
    from sslrs_tf.data.pipeline import make_dataset

    dataset = make_dataset(builder, "train", crop_size=case.size, batch_size=case.batch, shuffle_buffer=64)
    times = fit_step_times(keras_method(case), dataset, steps)
    return case.batch * len(times) / sum(times)  # input stalls count: total time, not the median


def theirs(case, files, steps, warmup=2):
    """Pairs/s of the DataLoader into the PyTorch step."""
    import torch

    dataset = RasterioPairs(files, case.size)
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=(warmup + steps + 4) * case.batch)
    loader = torch.utils.data.DataLoader(dataset, batch_size=case.batch, sampler=sampler, num_workers=2,
                                         drop_last=True, multiprocessing_context="spawn")  # TF is loaded: no fork
    step = torch_step(case)
    times, batches = [], iter(loader)
    for i in range(warmup + steps):
        start = time.perf_counter()
        s1, s2 = next(batches)
        step(s1.contiguous(memory_format=torch.channels_last), s2.contiguous(memory_format=torch.channels_last))
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return case.batch * len(times) / sum(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=512)
    parser.add_argument("--batch", type=int, default=PUBLISHED_BATCH)
    parser.add_argument("--steps", type=int, default=4, help="batches timed per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None, help="folder for the synthetic files (default: a temp folder)")
    parser.add_argument("--torch-allocator", choices=("glibc", "jemalloc"), default="glibc",
                        help="jemalloc: rerun under LD_PRELOAD jemalloc (bench/machine.py)")
    args = parser.parse_args()
    if args.torch_allocator == "jemalloc":
        use_jemalloc()
    try:
        import torch  # noqa: F401
    except ImportError:
        print(json.dumps({"bench": "end_to_end", "skipped": "torch is not installed (pip install torch==2.13.0)"}))
        return

    if args.batch > args.patches:
        parser.error(f"--batch ({args.batch}) must not exceed --patches ({args.patches})")
    case = dataclasses.replace(CASES["simclr_resnet18"], batch=args.batch)
    builder, files = synthetic_sen12ms(args.work, args.patches, "bench_e2e_")
    a, b = [], []
    for _ in range(args.repeats):
        a.append(ours(case, builder, args.steps))
        b.append(theirs(case, files, args.steps))
    a, b = statistics.median(a), statistics.median(b)
    print(json.dumps({"bench": "end_to_end", "what": f"{case.what}, from the files, input included",
                      "ours": round(a, 2), "pytorch_rasterio_dataloader": round(b, 2), "ratio": round(a / b, 2),
                      "repeats": args.repeats, "allocator": allocator(), "machine": describe()}))


if __name__ == "__main__":
    main()
