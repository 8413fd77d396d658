"""What a GPU session runs on: the device, the versions, runners' imports, the benchmark data.

    python bench/gpu_env.py [--benchmark synthetic-scenes]

Checks that `runners` imports without the database or Ray (the GPU machine
has neither) and renders/caches the benchmark's splits once, before the
timed parts of bench/gpu_session.sh.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import metadata

import torch

import runners
import runners.benchmarks
import runners.step
import runners.train
import runners.weighting
from runners.benchmarks import BENCHMARKS
from runners.paths import data_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default="synthetic-scenes")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        print(
            f"device {props.name}, {props.total_memory / 2**30:.0f} GiB, capability"
            f" {props.major}.{props.minor}, {props.multi_processor_count} SMs,"
            f" {torch.cuda.device_count()} visible"
        )
    else:
        print("device: no CUDA device")
    versions = {name: metadata.version(name) for name in ("pydantic", "torchjd", "quadprog")}
    print(f"runners from {runners.__file__}; {versions}")
    heavy = sorted(m for m in ("ray", "sqlalchemy", "db", "streamlit") if m in sys.modules)
    print(f"db/ray modules imported with runners.train: {heavy or 'none'}")
    benchmark = BENCHMARKS.get(args.benchmark)
    started = time.perf_counter()
    for split in ("train", "test"):
        benchmark.load(split, benchmark.protocol(1))
    print(
        f"{args.benchmark} v1 data rendered/cached in {time.perf_counter() - started:.1f} s"
        f" under {data_root()}"
    )


if __name__ == "__main__":
    main()
