"""Do CUDA-graph replays train as the eager step does?  Parameters after a few steps, compared.

    python bench/graph_check.py [--device cuda] [--methods equal,uncertainty,dwa,...] [--steps 6]

For each method, two copies of the default model (same initial weights, the
same Adam made capturable, so that both run the same optimiser kernels) are
trained on the same batches: one through `TrainingStep` with CUDA graphs
(the plan `runners.step` gives the method), one eagerly.  Halfway the
learning rate is changed by a scheduler and `end_epoch` is called, as between
epochs, so that state changed outside the graphs is checked too.  It prints
the plan and the largest parameter difference relative to the parameters'
scale: 0 or rounding (~1e-6) when the replays do what the eager step does.
On the CPU both copies run eagerly (a rehearsal of the script).  The last
line is the results as JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
from typing import Any

import torch

from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES
from runners.step import TrainingStep, describe, prepare_optimizer
from runners.weighting import WEIGHTINGS

METHODS = "equal,uncertainty,dwa,dtp,gls,pcgrad,upgrad,mgda,cagrad,nash-mtl,rlw"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--benchmark", default="synthetic-scenes")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    device = torch.device(args.device)
    benchmark = BENCHMARKS.get(args.benchmark)
    protocol = benchmark.protocol(1)
    data = benchmark.load("train", protocol)
    size = protocol.batch_size
    batches = [
        {k: v[i * size : (i + 1) * size].to(device) for k, v in data.items()}
        for i in range(args.steps)
    ]
    tasks = benchmark.tasks
    torch.manual_seed(0)
    base = ARCHITECTURES.get("hard-sharing")(tasks, "small-cnn")
    base = base.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    results: dict[str, Any] = {}
    for name in args.methods.split(","):
        try:
            results[name] = compare(name, base, batches, tasks, device)
        except Exception as e:  # one method failing leaves the others
            results[name] = {"error": f"{type(e).__name__}: {e}".splitlines()[0]}
        row = results[name]
        if "error" in row:
            print(f"{name:<13} failed: {row['error']}", flush=True)
        else:
            print(
                f"{name:<13} plan {row['plan']:<6} replays {row['replays']:>2}:"
                f" max |graph - eager| / max |p| = {row['relative_gap']:.2e}"
                f" ({'identical' if row['relative_gap'] == 0 else 'differs'})"
                + (f"; capture failed: {row['graph_failure']}" if row["graph_failure"] else ""),
                flush=True,
            )
    print("JSON " + json.dumps(results))


def compare(
    name: str,
    base: torch.nn.Module,
    batches: list[dict[str, torch.Tensor]],
    tasks: Any,
    device: torch.device,
) -> dict[str, Any]:
    steps = []
    for graphs in (True, False):
        model = copy.deepcopy(base)
        method = WEIGHTINGS.get(name)(len(tasks)).to(device)
        optimizer = torch.optim.Adam([*model.parameters(), *method.parameters()], lr=1e-3)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
        step = TrainingStep(model, method, optimizer, tasks, device, graphs=graphs)
        if not graphs:  # the same optimiser kernels as the captured step
            prepare_optimizer(optimizer, device, capturable=step.device.type == "cuda")
        for i, batch in enumerate(batches):
            losses, _ = step(batch)
            if i == len(batches) // 2 - 1:  # an epoch boundary
                method.end_epoch(losses.detach().clone())
                # Unequal changes, so that DWA's weights move away from 1.
                scale = torch.linspace(0.8, 1.2, len(losses), device=losses.device)
                method.end_epoch(losses.detach() * scale)
                scheduler.step()
        steps.append(step)
    graph_step, eager_step = steps
    gap = max(
        float((a.detach() - b.detach()).abs().max())
        for a, b in zip(graph_step.model.parameters(), eager_step.model.parameters(), strict=True)
    )
    scale = max(float(p.detach().abs().max()) for p in eager_step.model.parameters())
    return {**describe(graph_step), "relative_gap": gap / scale}


if __name__ == "__main__":
    main()
