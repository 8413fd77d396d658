"""Same seed, same device, same results? Two trainings per method, compared bit for bit.

    python bench/determinism.py [--device cuda] [--methods equal,dwa,pcgrad,upgrad]
                                [--benchmark synthetic-scenes] [--epochs N] [--seed 0]

Each method (hard parameter sharing on small-cnn, Adam) is trained twice
with the same seed through `runners.train.train`, as a job is; the test
metrics and the curves (mean loss and task weight per epoch) of the two runs
are compared exactly.  It prints which step plan ran (`runners.step`: CUDA
graphs or eager), the wall time and the peak GPU memory of each run.  The
last line is the results as JSON.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from protocols import plan_text, record_steps, shortened

from runners.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--benchmark", default="synthetic-scenes")
    parser.add_argument("--methods", default="equal,dwa,pcgrad,upgrad")
    parser.add_argument("--epochs", type=int, default=None, help="default: the protocol's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    benchmark = shortened(args.benchmark, args.epochs)
    steps = record_steps()
    results: dict[str, Any] = {}
    for method in args.methods.split(","):
        spec = {
            "benchmark": benchmark,
            "protocol_version": 1,
            "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
            "weighting": {"name": method},
            "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
            "scheduler": {"name": "cosine"},
        }
        runs = []
        for attempt in range(2):
            run = train(spec, args.seed, device=args.device)
            memory = run.peak_gpu_memory_bytes
            print(
                f"{method} run {attempt + 1}: {run.wall_time_s:.1f} s,"
                f" peak GPU memory {'-' if memory is None else f'{memory / 2**20:.0f} MiB'},"
                f" step: {plan_text(steps[-1])}",
                flush=True,
            )
            runs.append(run)
        same_metrics = runs[0].metrics == runs[1].metrics
        same_curves = runs[0].curves == runs[1].curves
        differences = [
            f"{task}.{metric}: {value!r} vs {runs[1].metrics[task][metric]!r}"
            for task, values in runs[0].metrics.items()
            for metric, value in values.items()
            if value != runs[1].metrics[task][metric]
        ]
        curve_gap = max(
            (abs(a.value - b.value) for a, b in zip(runs[0].curves, runs[1].curves, strict=True)),
            default=0.0,
        )
        verdict = "identical" if same_metrics and same_curves else "DIFFERENT"
        print(
            f"{method}: metrics {'identical' if same_metrics else 'DIFFERENT'},"
            f" curves {'identical' if same_curves else f'differ by up to {curve_gap:.3g}'}"
            f" -> {verdict}",
            flush=True,
        )
        for line in differences[:5]:
            print(f"    {line}")
        results[method] = {
            "same_metrics": same_metrics,
            "same_curves": same_curves,
            "curve_gap": curve_gap,
            "metrics": runs[0].metrics,
            "plan": plan_text(steps[-1]),
            "wall_time_s": [r.wall_time_s for r in runs],
            "peak_gpu_memory_bytes": runs[0].peak_gpu_memory_bytes,
        }
    print("JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
