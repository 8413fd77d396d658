"""Wall time and headline metrics of whole training runs, on CPU or GPU.

    python bench/train_time.py [--device cuda] [--seed 0] SPEC...

Trains each spec under its benchmark's protocol exactly as a job does
(`runners.train.train`) and prints one row per spec.  With a GPU, this is
the smoke test that the one training loop runs there unchanged.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from runners.train import train
from submissions.loader import read
from submissions.spec import validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("specs", nargs="+", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'spec':<18}{'device':<8}{'wall s':>8}{'mIoU':>8}{'abs err':>9}{'mean angle':>12}")
    for path in args.specs:
        spec, problems = validate(read(path)[0])
        if spec is None:
            raise SystemExit("; ".join(str(p) for p in problems))
        started = time.perf_counter()
        result = train(spec.normalised, args.seed, device=args.device)
        wall = time.perf_counter() - started
        m = result.metrics
        print(
            f"{path.stem:<18}{args.device:<8}{wall:>8.1f}{m['segmentation']['miou']:>8.3f}"
            f"{m['depth']['abs_err']:>9.3f}{m['normal']['mean_angle']:>12.2f}"
        )
    if args.device.startswith("cuda"):
        print(
            f"GPU: {torch.cuda.get_device_name()}; peak memory"
            f" {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
        )


if __name__ == "__main__":
    main()
