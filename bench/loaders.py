"""Samples per second of the real benchmarks' loaders, next to the training step's.

    python bench/loaders.py [--images 64] [--threads 2] [--device cpu] [--resnet]

Fixture data at the real resolution (NYUv2 288x384, Cityscapes 128x256), in
the real on-disk format (mtan's float64 `.npy` files), is written to a
temporary folder; then, for each benchmark:

- cold: `load` with no cache and the source files evicted from the page
  cache (`posix_fadvise(DONTNEED)` on our own files only): every file is read
  from disk, checked and written to the cache;
- warm map: `load` again: the cached arrays are mapped, nothing is read;
- warm read: the mapped arrays are read once (what the first epoch touches),
  from disk (cache evicted) and from the page cache;
- augmentation: `scale_crop_flip` on one training batch (NYUv2 batch 8,
  Cityscapes batch 8);
- step: one training step (forward, backward, Adam) of hard parameter sharing
  on SegNet at the protocol's batch size (NYUv2 2, Cityscapes 8), channels_last,
  and with --resnet the dilated ResNet-50 at its batch size (--max-batch caps
  both, for a machine without the memory for ResNet-50 at batch 64).

Loading is once per job and augmentation once per step, so the loader keeps
up when the load rate is well above the step rate divided by the epochs, and
augmentation's rate is well above the step's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from runners.benchmarks import BENCHMARKS
from runners.benchmarks.base import Protocol
from runners.benchmarks.npy_layout import NpyBenchmark, cache_root, scale_crop_flip
from runners.models import ARCHITECTURES
from runners.step import TrainingStep
from runners.weighting import WEIGHTINGS


def evict(folder: Path) -> None:
    """Drop our files under `folder` from the page cache, so the next read is from disk."""
    for path in folder.rglob("*.npy"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def write_fixture(root: Path, benchmark: NpyBenchmark, count: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    h, w = shape
    classes = benchmark.layout.num_classes
    for split in ("train", "val"):
        for field in benchmark.layout.fields:
            folder = root / split / field.folder
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                if field.kind == "label":
                    array = rng.integers(-1, classes, size=(h, w)).astype(np.float64)
                elif field.kind == "depth":
                    array = rng.uniform(0.0, 10.0, size=(h, w, 1))
                elif field.kind == "normal":
                    array = rng.uniform(-0.5, 0.5, size=(h, w, 3))
                else:
                    array = rng.uniform(0.0, 1.0, size=(h, w, 3))
                np.save(folder / f"{i}.npy", array)


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Median seconds of `fn` over `repeats` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def step_rate(benchmark: NpyBenchmark, backbone: str, batch: int, device: str, steps: int) -> float:
    """Training samples per second of hard sharing on `backbone` (after one warm-up step)."""
    h, w = benchmark.protocols[1].height_width
    tasks = benchmark.tasks
    model = ARCHITECTURES.get("hard-sharing")(tasks, backbone)
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    data = {
        "image": torch.rand(batch, 3, h, w, device=device).contiguous(
            memory_format=torch.channels_last
        ),
        "segmentation": torch.randint(0, 7, (batch, h, w), device=device),
        "depth": torch.rand(batch, 1, h, w, device=device),
        "normal": torch.rand(batch, 3, h, w, device=device) - 0.5,
    }
    # The training loop's step with equal weighting: the model's training loss, its backward.
    step = TrainingStep(model, WEIGHTINGS.get("equal")(len(tasks)), optimizer, tasks, device)

    def one() -> None:
        step(data)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    one()
    return batch / timed(one, steps)


def measure(name: str, tmp: Path, args: argparse.Namespace) -> list[tuple[str, str, float]]:
    """The table's rows for one benchmark, on fixture files written under `tmp`."""
    registered = BENCHMARKS.get(name)
    assert isinstance(registered, NpyBenchmark)
    real = registered.protocol(1)
    protocol: Protocol = dataclasses.replace(real, train_size=args.images, test_size=args.images)
    benchmark = NpyBenchmark(
        name,
        registered.description,
        registered.tasks,
        {f.key: f.folder for f in registered.layout.fields},
        registered.root_env,
        {1: protocol},
    )
    root = tmp / name
    os.environ[registered.root_env] = str(root)
    write_fixture(root, benchmark, args.images, protocol.height_width)
    n = args.images
    rows = []

    def load() -> None:
        benchmark.load("train", protocol)

    def read_all() -> None:
        for tensor in benchmark.load("train", protocol).values():
            tensor.sum()

    evict(root)
    rows.append((name, "cold: read + check + cache", n / timed(load)))
    rows.append((name, "warm: map the cache", n / timed(load, 5)))
    evict(cache_root())
    rows.append((name, "warm: read the cache from disk", n / timed(read_all)))
    rows.append((name, "warm: read the cache, page cache", n / timed(read_all, 3)))

    aug_batch = 8
    data = benchmark.load("train", protocol)
    batch = {k: v[:aug_batch].to(args.device) for k, v in data.items()}
    generator = torch.Generator().manual_seed(0)

    def augment() -> None:
        scale_crop_flip(batch, generator)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    augment()
    rows.append((name, f"augmentation, batch {aug_batch}", aug_batch / timed(augment, 5)))
    for backbone in ["segnet", *(["resnet50-dilated"] if args.resnet else [])]:
        size = min(real.batch_size_for(backbone), args.max_batch or 10**9)
        rate = step_rate(benchmark, backbone, size, args.device, args.steps)
        rows.append((name, f"training step: hard-sharing {backbone}, batch {size}", rate))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64, help="fixture images per split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resnet", action="store_true", help="also time the ResNet-50 step")
    parser.add_argument(
        "--max-batch", type=int, default=0, help="cap the step's batch (memory); 0: the protocol's"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="mtlb-bench-loaders-") as tmp:
        os.environ["MTLB_DATA_ROOT"] = str(Path(tmp) / "data")
        for name in ("nyuv2", "cityscapes"):
            rows += measure(name, Path(tmp), args)

    device = args.device if args.device != "cpu" else f"cpu, {args.threads} threads"
    print(f"\n{args.images} fixture images per split at the real resolution; {device}\n")
    print("| benchmark | what | samples/s |\n|---|---|---:|")
    for name, what, rate in rows:
        print(
            f"| {name} | {what} | {rate:,.1f} |"
            if rate >= 10
            else f"| {name} | {what} | {rate:.3f} |"
        )


if __name__ == "__main__":
    main()
