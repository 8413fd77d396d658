"""Every shipped example spec trained end to end on a device, at its benchmark's mini size.

    python bench/examples_smoke.py [--device cpu|cuda] [--only a,b] [--threads 1]

Each synthetic example (`submissions/examples/*.yaml`, checked as `mtlb
validate` checks it) is trained by `runners.train.train` on the mini variant of
its benchmark (synthetic-scenes -> synthetic-scenes-mini, same protocol
version): every architecture and weighting method the examples name runs its
forward, its backward and its optimiser steps on the device, and is evaluated.
Examples of benchmarks with real data (NYUv2, Cityscapes) are left out: no
dataset is downloaded.  A small table: example, architecture, weighting,
state, seconds, and the first metric of the first task; the exit status is 1
if any example failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runners.train import Diverged, train  # noqa: E402
from submissions import loader  # noqa: E402
from submissions.spec import validate  # noqa: E402  (no database: runs where SQLAlchemy is not)

MINI = {
    "synthetic-scenes": "synthetic-scenes-mini",
    "synthetic-shapes": "synthetic-shapes-mini",
    "synthetic-attributes": "synthetic-attributes-mini",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default="", help="comma-separated example names")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    only = {n for n in args.only.split(",") if n}
    rows, failed = [], 0
    for path in sorted((ROOT / "submissions" / "examples").glob("*.yaml")):
        if only and path.stem not in only:
            continue
        document, _ = loader.read(path)
        valid, problems = validate(document)
        if valid is None:
            rows.append((path.stem, "-", "-", f"invalid: {problems[0]}", 0.0, ""))
            failed += 1
            continue
        spec = dict(valid.normalised)
        if spec["benchmark"] not in MINI:
            continue
        spec["benchmark"] = MINI[spec["benchmark"]]
        architecture, weighting = spec["architecture"]["name"], spec["weighting"]["name"]
        started = time.perf_counter()
        try:
            result = train(spec, seed=0, device=args.device)
        except Diverged as e:
            state, metric = f"diverged: {e}", ""
        except Exception as e:
            state, metric = f"failed: {type(e).__name__}: {e}".splitlines()[0][:80], ""
            failed += 1
        else:
            task, values = next(iter(result.metrics.items()))
            name, value = next(iter(values.items()))
            state, metric = "ok", f"{task}.{name} = {value:.4f}"
        rows.append(
            (path.stem, architecture, weighting, state, time.perf_counter() - started, metric)
        )
        print(f"{path.stem}: {state}", file=sys.stderr, flush=True)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"\nexamples on {device} (mini protocols, seed 0)")
    print(f"{'example':28} {'architecture':14} {'weighting':14} {'state':10} {'s':>6}  metric")
    for name, arch, weighting, state, seconds, metric in rows:
        print(f"{name:28} {arch:14} {weighting:14} {state:10} {seconds:6.1f}  {metric}")
    print(f"{len(rows) - failed} of {len(rows)} examples trained")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
