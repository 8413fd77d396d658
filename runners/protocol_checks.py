"""What a benchmark's protocol allows a spec to choose: each rule written once.

The spec validator (`submissions.spec`), the search-space check
(`submissions.search`) and the worker, which re-checks a job's spec before it
builds anything (`runners.train.build`), all call `protocol_problems`, so
they accept the same specs and say the same words.  `SECTIONS` is the one
map from a spec's component section to the registry that names its components.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import runners.models
import runners.weighting  # noqa: F401  (registers methods)
from runners.benchmarks import Benchmark, Protocol
from runners.models import ARCHITECTURES, BackboneChoice, MultiTaskModel
from runners.optim import OPTIMIZERS, SCHEDULERS
from runners.registry import Registry
from runners.weighting import WEIGHTINGS

# A spec's component sections ({name, ...parameters}), each named from its registry.
SECTIONS: dict[str, Registry[Any]] = {
    "architecture": ARCHITECTURES,
    "weighting": WEIGHTINGS,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
}


@dataclass(frozen=True)
class ProtocolProblem:
    """One thing the protocol refuses: where in the spec (`optimizer.lr`) and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def split_component(section: Mapping[str, Any], *reserved: str) -> tuple[str, dict[str, Any]]:
    """A spec section {name, ...params} -> (name, params without the reserved keys)."""
    params = {k: v for k, v in section.items() if k not in ("name", *reserved)}
    return str(section["name"]), params


def checked_parameters(section: str, component: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(name, parameters) of a spec section, the parameters checked by its registry's model.

    A job carries its spec as plain data: the worker trusts nothing it did not check.
    """
    name, params = split_component(component, "backbone")
    return name, dict(SECTIONS[section].parameters(name).model_validate(params))


def model_from_spec(
    architecture: Mapping[str, Any], benchmark: Benchmark, *, pretrained: bool = False
) -> MultiTaskModel:
    """The model of a spec's `architecture` section, its parameters checked first.

    `pretrained`: start the backbone from its ImageNet weights (the protocol's choice).
    """
    name, params = checked_parameters("architecture", architecture)
    return ARCHITECTURES.get(name)(
        benchmark.tasks,
        BackboneChoice.from_spec(architecture["backbone"], pretrained=pretrained),
        **params,
    )


def parameter_count(architecture: Mapping[str, Any], benchmark: Benchmark) -> int:
    """Parameters of a spec's model, counted without allocating it (built on the meta device)."""
    return _parameter_count(_key(architecture), benchmark)


def flops_per_image(
    architecture: Mapping[str, Any], benchmark: Benchmark, protocol: Protocol
) -> int:
    """Forward FLOPs of one image through a spec's model under `protocol`, without allocating.

    As torch's `FlopCounterMode` counts them (a multiply-add is 2), in eval mode:
    the count every run records (`runners.train.forward_flops`).  A forward pass
    on the meta device costs a few tenths of a second (shape functions run in
    Python), ten times building the model: hence its own cache.
    """
    return _flops(_key(architecture), benchmark, protocol.height_width)


def model_cost(
    architecture: Mapping[str, Any], benchmark: Benchmark, protocol: Protocol
) -> tuple[int, int]:
    """(parameters, forward FLOPs of one image) of a spec's model under `protocol`."""
    return parameter_count(architecture, benchmark), flops_per_image(
        architecture, benchmark, protocol
    )


def _key(architecture: Mapping[str, Any]) -> str:
    return json.dumps(dict(architecture), sort_keys=True)


# Cached: a search space asks about many values, and most repeat the spec's architecture.
@lru_cache(maxsize=256)
def _meta_model(architecture: str, benchmark: Benchmark) -> MultiTaskModel:
    with torch.device("meta"):
        model = model_from_spec(json.loads(architecture), benchmark)
    return model.eval()


@lru_cache(maxsize=256)
def _parameter_count(architecture: str, benchmark: Benchmark) -> int:
    return sum(p.numel() for p in _meta_model(architecture, benchmark).parameters())


@lru_cache(maxsize=256)
def _flops(architecture: str, benchmark: Benchmark, height_width: tuple[int, int]) -> int:
    # The protocol's output scaling is left out: torch counts no FLOPs for it.
    image = torch.empty(1, 3, *height_width, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _meta_model(architecture, benchmark)(image)
    return int(counter.get_total_flops())


def _gflop(flops: int, other: int) -> str:
    """FLOPs in GFLOP, to 3 significant digits, unless that would hide the difference."""
    short, other_short = f"{flops / 1e9:.3g}", f"{other / 1e9:.3g}"
    return f"{short} GFLOP" if short != other_short else f"{flops:,} FLOPs"


def protocol_problems(
    spec: Mapping[str, Any], benchmark: Benchmark, protocol: Protocol
) -> list[ProtocolProblem]:
    """Every way a spec (its parameters already typed and bounded) breaks `protocol`.

    Epochs, batch size, seeds and resources are not in a spec at all: they are
    the protocol's.  What a spec does choose is checked here: the backbone,
    what the architecture's own parameters must satisfy with the benchmark's
    tasks, the weighting the architecture can use, the learning rate, and the
    size of the model in parameters and in FLOPs per image.
    """
    problems = []
    architecture = spec["architecture"]
    arch_name, arch_params = split_component(architecture, "backbone")
    arch = ARCHITECTURES.get(arch_name)
    backbone = BackboneChoice.from_spec(architecture["backbone"])
    if backbone.name not in protocol.backbones:
        problems.append(
            ProtocolProblem(
                "architecture.backbone",
                f"{backbone.name!r} is not allowed by {benchmark.name}"
                f" v{protocol.version} (allowed: {', '.join(protocol.backbones)})",
            )
        )
    task_names = tuple(t.name for t in benchmark.tasks)
    arch_problems = [
        ProtocolProblem(f"architecture.{field}", message)
        for field, message in arch.check(task_names, backbone.encoder_type, arch_params)
    ]
    problems += arch_problems
    weighting = spec["weighting"]["name"]
    if arch.allowed_weightings is not None and weighting not in arch.allowed_weightings:
        problems.append(
            ProtocolProblem(
                "weighting.name",
                f"architecture {arch_name!r} cannot use weighting {weighting!r}"
                f" (allowed: {', '.join(sorted(arch.allowed_weightings))})",
            )
        )
    if (
        not arch_problems
        and WEIGHTINGS.get(weighting).needs_representation
        and not arch.provides_representation(task_names, backbone.encoder_type, arch_params)
    ):
        problems.append(
            ProtocolProblem(
                "weighting.name",
                f"weighting {weighting!r} works on a shared representation, which"
                f" architecture {arch_name!r} does not have with these parameters",
            )
        )
    lr = checked_parameters("optimizer", spec["optimizer"])[1].get("lr")  # its default if unset
    if lr is not None and lr > protocol.max_lr:
        problems.append(
            ProtocolProblem(
                "optimizer.lr", f"{lr} exceeds the protocol's maximum of {protocol.max_lr}"
            )
        )
    # The model cannot be built (to be measured) with parameters its architecture rejects,
    # and is not worth measuring on a backbone the protocol refuses anyway.
    if arch_problems or backbone.name not in protocol.backbones:
        return problems
    where = f"{benchmark.name} v{protocol.version}"
    count = parameter_count(architecture, benchmark)
    if count > protocol.max_parameters:
        problems.append(
            ProtocolProblem(
                "architecture",
                f"the model has {count:,} parameters; {where}"
                f" allows at most {protocol.max_parameters:,}",
            )
        )
    # Last, and only for an otherwise acceptable spec: it runs the model (on the meta device).
    if problems:
        return problems
    flops = flops_per_image(architecture, benchmark, protocol)
    if flops > protocol.max_flops:
        problems.append(
            ProtocolProblem(
                "architecture",
                f"the model needs {_gflop(flops, protocol.max_flops)} per image; {where}"
                f" allows at most {_gflop(protocol.max_flops, flops)}",
            )
        )
    return problems
