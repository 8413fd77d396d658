"""The one training loop, for every architecture and weighting method.

It has no branch on a method's name: the architecture maps images to
predictions, each task gives its loss and metrics, and the weighting method
turns the step's losses into gradients (`Weighting.backward`).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import runners.models
import runners.weighting  # noqa: F401  (registers methods)
from runners.benchmarks import BENCHMARKS, Benchmark, Protocol
from runners.models import ARCHITECTURES, BackboneChoice, MultiTaskModel
from runners.optim import OPTIMIZERS, SCHEDULERS
from runners.weighting import WEIGHTINGS, StepGraph, Weighting


class Diverged(RuntimeError):
    """A training loss became NaN or infinite."""


@dataclass(frozen=True)
class CurvePoint:
    epoch: int
    task: str
    name: str  # "loss" (mean training loss) or "weight" (mean task weight)
    value: float


@dataclass
class RunResult:
    """What a job produces; the worker returns it to the dispatcher, which stores it."""

    metrics: dict[str, dict[str, float]]
    curves: list[CurvePoint]
    parameter_count: int
    wall_time_s: float
    device: str
    library_versions: dict[str, str] = field(default_factory=dict)
    flops: int | None = None  # forward FLOPs of one input image


ProgressCallback = Callable[[int, int], None]


def split_component(section: Mapping[str, Any], *reserved: str) -> tuple[str, dict[str, Any]]:
    """A spec section {name, ...params} -> (name, params without the reserved keys)."""
    params = {k: v for k, v in section.items() if k not in ("name", *reserved)}
    return str(section["name"]), params


def model_from_spec(
    architecture: Mapping[str, Any], benchmark: Benchmark, *, pretrained: bool = False
) -> MultiTaskModel:
    """The model of a spec's `architecture` section, its parameters checked first.

    `pretrained`: start the backbone from its ImageNet weights (the protocol's choice).
    """
    arch_name, arch_params = split_component(architecture, "backbone")
    return ARCHITECTURES.get(arch_name)(
        benchmark.tasks,
        BackboneChoice.from_spec(architecture["backbone"], pretrained=pretrained),
        **dict(ARCHITECTURES.parameters(arch_name).model_validate(arch_params)),
    )


def parameter_count(architecture: Mapping[str, Any], benchmark: Benchmark) -> int:
    """Parameters of a spec's model, counted without allocating it (built on the meta device)."""
    with torch.device("meta"):
        model = model_from_spec(architecture, benchmark)
    return sum(p.numel() for p in model.parameters())


def model_size_problem(
    architecture: Mapping[str, Any], benchmark: Benchmark, protocol: Protocol
) -> str | None:
    """Why the model is too large for the protocol, or None."""
    count = parameter_count(architecture, benchmark)
    if count <= protocol.max_parameters:
        return None
    return (
        f"the model has {count:,} parameters; {benchmark.name} v{protocol.version}"
        f" allows at most {protocol.max_parameters:,}"
    )


def build(
    spec: Mapping[str, Any], benchmark: Benchmark, protocol: Protocol
) -> tuple[MultiTaskModel, Weighting, torch.optim.Optimizer, Any]:
    """Model, method, optimiser and scheduler of a validated spec.

    Parameters are re-checked through the registries' models: a job carries
    its spec as plain data, and the worker trusts nothing it did not check.
    """
    backbone = BackboneChoice.from_spec(spec["architecture"]["backbone"]).name
    if backbone not in protocol.backbones:
        raise ValueError(
            f"backbone {backbone!r} is not allowed by {benchmark.name} v{protocol.version}"
        )
    # Counted on the meta device before anything is allocated.
    too_large = model_size_problem(spec["architecture"], benchmark, protocol)
    if too_large is not None:
        raise ValueError(too_large)
    model = model_from_spec(
        spec["architecture"], benchmark, pretrained=protocol.pretrained_backbones
    )
    w_name, w_params = split_component(spec["weighting"])
    weighting = WEIGHTINGS.get(w_name)(
        len(benchmark.tasks), **dict(WEIGHTINGS.parameters(w_name).model_validate(w_params))
    )
    o_name, o_params = split_component(spec["optimizer"])
    o_checked = dict(OPTIMIZERS.parameters(o_name).model_validate(o_params))
    if o_checked.get("lr", 0.0) > protocol.max_lr:
        raise ValueError(f"lr {o_checked['lr']} exceeds the protocol's maximum {protocol.max_lr}")
    optimizer = OPTIMIZERS.get(o_name)([*model.parameters(), *weighting.parameters()], **o_checked)
    scheduler = None
    if spec.get("scheduler"):
        s_name, s_params = split_component(spec["scheduler"])
        scheduler = SCHEDULERS.get(s_name)(
            optimizer,
            protocol.epochs,
            **dict(SCHEDULERS.parameters(s_name).model_validate(s_params)),
        )
    return model, weighting, optimizer, scheduler


def train(
    spec: Mapping[str, Any],
    seed: int,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Train `spec` under its benchmark's protocol with `seed`; evaluate on the test split.

    On CPU the same (spec, seed, thread count) gives the same metrics.
    Raises `Diverged` if an epoch's mean training loss is not finite.
    """
    started = time.perf_counter()
    benchmark = BENCHMARKS.get(str(spec["benchmark"]))
    protocol = benchmark.protocol(int(spec["protocol_version"]))
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    model, weighting, optimizer, scheduler = build(spec, benchmark, protocol)
    # channels_last: 2.4x faster for this kind of network on CPU (design.md).
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    weighting = weighting.to(device)
    train_data = {k: v.to(device) for k, v in benchmark.load("train", protocol).items()}
    tasks = benchmark.tasks
    shared = model.shared_parameters()
    own = [model.task_parameters(t.name) for t in tasks]

    curves: list[CurvePoint] = []
    n_train = train_data["image"].shape[0]
    steps = math.ceil(n_train / protocol.batch_size)
    for epoch in range(protocol.epochs):
        model.train()
        order = torch.randperm(n_train, generator=generator).to(device)
        # Sums stay on the device; one host sync per epoch, not per step.
        loss_sum = torch.zeros(len(tasks), device=device)
        weight_sum = torch.zeros(len(tasks), device=device)
        for step in range(steps):
            index = order[step * protocol.batch_size : (step + 1) * protocol.batch_size]
            representation, outputs = model(train_data["image"][index])
            graph = StepGraph(
                # The model adds auxiliary predictions' losses (deep supervision) if it has any.
                [model.training_loss(t, outputs, train_data[t.name][index]) for t in tasks],
                representation,
                shared,
                own,
            )
            optimizer.zero_grad(set_to_none=True)
            weights = weighting.backward(graph)
            optimizer.step()
            loss_sum += graph.losses.detach()
            weight_sum += weights
        mean_losses = loss_sum / steps
        if not bool(torch.isfinite(mean_losses).all()):
            raise Diverged(f"training loss not finite in epoch {epoch}: {mean_losses.tolist()}")
        weighting.end_epoch(mean_losses)
        for t, loss, weight in zip(
            tasks, mean_losses.tolist(), (weight_sum / steps).tolist(), strict=True
        ):
            curves.append(CurvePoint(epoch, t.name, "loss", loss))
            curves.append(CurvePoint(epoch, t.name, "weight", weight))
        if scheduler is not None:
            scheduler.step()
        if progress is not None:
            progress(epoch + 1, protocol.epochs)

    metrics = evaluate(model, benchmark, protocol, device)
    flops = forward_flops(model, train_data["image"][:1])
    return RunResult(
        metrics=metrics,
        curves=curves,
        parameter_count=sum(p.numel() for p in model.parameters()),
        flops=flops,
        wall_time_s=time.perf_counter() - started,
        device=device_name(device),
        library_versions={"torch": torch.__version__, "python": platform.python_version()},
    )


@torch.no_grad()
def evaluate(
    model: MultiTaskModel, benchmark: Benchmark, protocol: Protocol, device: str
) -> dict[str, dict[str, float]]:
    """Metrics of every task over the whole test split."""
    model.eval()
    data = {k: v.to(device) for k, v in benchmark.load("test", protocol).items()}
    states = {t.name: t.new_state() for t in benchmark.tasks}
    n = data["image"].shape[0]
    for start in range(0, n, protocol.batch_size):
        _, outputs = model(data["image"][start : start + protocol.batch_size])
        for t in benchmark.tasks:
            states[t.name].update(
                outputs[t.name], data[t.name][start : start + protocol.batch_size]
            )
    metrics = {name: state.compute() for name, state in states.items()}
    for task, values in metrics.items():
        for metric, value in values.items():
            if not math.isfinite(value):
                raise Diverged(f"test metric {task}.{metric} is not finite: {value}")
    return metrics


@torch.no_grad()
def forward_flops(model: MultiTaskModel, image: torch.Tensor) -> int:
    """FLOPs of one forward pass in eval mode, as torch counts them (a multiply-add is 2)."""
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(image)
    return int(counter.get_total_flops())


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
