"""The nyuv2 v1 training step: ms per step and achieved FLOP/s, on random data of the right shapes.

    python bench/nyuv2_step.py [--device cuda] [--steps 10] [--backbones segnet,resnet50-dilated]
                               [--methods <exact gradient methods to scan>] [--size 288x384]

Hard parameter sharing on each backbone the protocol allows, at its batch
size (SegNet 2, ResNet-50-dilated 8), 288x384, built without pretrained
weights (the step costs the same), Adam at the protocol's 1e-4; random images,
labels in [0, 13), positive depths and unit normals.  Each step is the
training loop's (`runners.step.TrainingStep`: on CUDA the batched Jacobian
and CUDA graphs where the method's plan allows).  Equal weighting is timed,
then every exact gradient method for a few steps; the slowest of those is
timed like equal.  FLOP/s: torch's FLOP count of one step (forward and
backward; a multiply-add is 2) over its median time, against a 4096^2 float32
matrix product (and with TF32, which cuDNN's convolutions may use on CUDA).
The last line is the results as JSON.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import time
from typing import Any

import torch
from step_time import matmul_flops_per_second
from torch.utils.flop_counter import FlopCounterMode

from runners.benchmarks import BENCHMARKS
from runners.protocol_checks import model_from_spec
from runners.step import TrainingStep, describe, peak_memory, reset_peak_memory
from runners.weighting import WEIGHTINGS
from runners.weighting.base import GradientMethod


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--steps", type=int, default=10, help="timed steps of equal and the slowest"
    )
    parser.add_argument("--scan-steps", type=int, default=2, help="timed steps per method scanned")
    parser.add_argument("--backbones", default="segnet,resnet50-dilated")
    parser.add_argument("--methods", default=None, help="exact gradient methods to scan (all)")
    parser.add_argument("--size", default=None, help="HxW instead of the protocol's 288x384")
    parser.add_argument("--batch", type=int, default=None, help="instead of the protocol's")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    nyuv2 = BENCHMARKS.get("nyuv2")
    protocol = nyuv2.protocol(1)
    height, width = protocol.height_width
    if args.size:
        height, width = (int(x) for x in args.size.split("x"))
    exact = [n for n in WEIGHTINGS.names() if issubclass(WEIGHTINGS.get(n), GradientMethod)]
    candidates = args.methods.split(",") if args.methods else exact
    ceiling = matmul_flops_per_second(args.device)
    tf32 = matmul_flops_per_second(args.device, tf32=True) if device.type == "cuda" else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"nyuv2 v1 hard-sharing, {height}x{width}, {args.device} ({name}); 4096^2 float32 matmul"
        f" {ceiling / 1e12:.2f} TFLOP/s"
        + ("" if tf32 is None else f", with TF32 {tf32 / 1e12:.2f} TFLOP/s"),
        flush=True,
    )
    results: dict[str, Any] = {"device": name, "matmul_tflops": ceiling / 1e12}
    results["matmul_tf32_tflops"] = None if tf32 is None else tf32 / 1e12
    for backbone in args.backbones.split(","):
        batch_size = args.batch or protocol.batch_size_for(backbone)
        batch = random_batch(batch_size, height, width, device)
        torch.manual_seed(0)
        spec = {"name": "hard-sharing", "backbone": backbone}
        base = model_from_spec(spec, nyuv2, pretrained=False)  # on the CPU: copied per method

        def measure(method: str, steps: int, flops: bool = False) -> dict[str, Any]:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            reset_peak_memory(device)
            model = copy.deepcopy(base).to(device, memory_format=torch.channels_last)  # noqa: B023
            weighting = WEIGHTINGS.get(method)(len(nyuv2.tasks)).to(device)
            optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], lr=1e-4)
            step = TrainingStep(model, weighting, optimizer, nyuv2.tasks, device)
            for _ in range(2):  # warm-up (and, with graphs, the capture)
                step(batch)  # noqa: B023
            times = []
            for _ in range(steps):
                sync(device)
                started = time.perf_counter()
                step(batch)  # noqa: B023
                sync(device)
                times.append(time.perf_counter() - started)
            row = {"method": method, "ms": 1000 * statistics.median(times), **describe(step)}
            row["peak_gpu_memory_bytes"] = peak_memory(device)
            if flops:
                try:
                    with FlopCounterMode(display=False) as counter:
                        step.eager(batch)  # noqa: B023
                    row["gflop"] = counter.get_total_flops() / 1e9
                except Exception as e:  # the counter under vmap: report, do not fail
                    row["gflop"] = None
                    row["flop_error"] = f"{type(e).__name__}: {e}".splitlines()[0]
            del step, model, weighting, optimizer
            return row

        header = (
            f"{'method':<14}{'plan':<8}{'ms/step':>9}{'x equal':>8}{'GFLOP':>9}{'TFLOP/s':>9}"
            f"{'% fp32':>8}{'% TF32':>8}{'peak MiB':>10}"
        )

        def show(row: dict[str, Any], equal_ms: float) -> None:
            gflop = row.get("gflop")
            achieved = None if gflop is None else gflop * 1e9 / (row["ms"] / 1000)
            row["tflops"] = None if achieved is None else achieved / 1e12
            memory = row["peak_gpu_memory_bytes"]
            print(
                f"{row['method']:<14}{row['plan']:<8}{row['ms']:>9.1f}"
                f"{row['ms'] / equal_ms:>8.2f}"
                + (f"{'n/a':>9}{'n/a':>9}{'n/a':>8}{'n/a':>8}" if achieved is None else
                   f"{gflop:>9.1f}{achieved / 1e12:>9.2f}{100 * achieved / ceiling:>8.1f}"
                   + (f"{100 * achieved / tf32:>8.1f}" if tf32 else f"{'-':>8}"))
                + (f"{'-':>10}" if memory is None else f"{memory / 2**20:>10.0f}"),
                flush=True,
            )  # fmt: skip
            if row.get("graph_failure"):
                print(f"    capture failed: {row['graph_failure']}")
            if row.get("flop_error"):
                print(f"    FLOP count failed: {row['flop_error']}")

        print(f"{backbone}, batch {batch_size}:\n{header}", flush=True)
        equal = measure("equal", args.steps, flops=True)
        show(equal, equal["ms"])
        scan = []
        for method in candidates:
            try:
                scan.append(measure(method, args.scan_steps))
            except Exception as e:  # one method failing (memory) leaves the others
                print(f"  {backbone} {method}: failed: {type(e).__name__}: {e}", flush=True)
        print(
            f"{backbone}, batch {batch_size}: scan of the exact gradient methods"
            f" ({args.scan_steps} steps each), ms/step: "
            + ", ".join(
                f"{r['method']} {r['ms']:.1f}" for r in sorted(scan, key=lambda r: -r["ms"])
            ),
            flush=True,
        )
        rows = [equal]
        if scan:
            slowest = max(scan, key=lambda r: r["ms"])["method"]
            rows.append(measure(slowest, args.steps, flops=True))
            show(rows[-1], equal["ms"])
        results[backbone] = {"batch": batch_size, "rows": rows, "scan": scan}
    print("JSON " + json.dumps(results))


def random_batch(
    size: int, height: int, width: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Random tensors of a nyuv2 training batch's shapes and kinds."""
    generator = torch.Generator().manual_seed(0)
    normal = torch.randn(size, 3, height, width, generator=generator)
    batch = {
        "image": torch.rand(size, 3, height, width, generator=generator),
        "segmentation": torch.randint(0, 13, (size, height, width), generator=generator),
        "depth": torch.rand(size, 1, height, width, generator=generator) * 10 + 0.1,
        "normal": normal / normal.norm(dim=1, keepdim=True),
    }
    batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    return {k: v.to(device) for k, v in batch.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
