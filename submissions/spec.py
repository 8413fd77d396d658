"""The spec language: a pydantic model composed from the runners' registries.

Each component section ({name, ...parameters}) is a discriminated union of
one model per registered component, built from that component's typed
keyword-only constructor parameters (`runners.registry.parameters_model`).
Adding a component to a registry adds it to the spec format and to
`mtlb schema`; nothing here lists components by hand.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import Field

import runners.models
import runners.weighting  # noqa: F401  (registers weighting methods)
from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES, BACKBONES
from runners.optim import OPTIMIZERS, SCHEDULERS
from runners.registry import Registry, StrictModel, suggestion
from runners.weighting import WEIGHTINGS
from submissions.loader import SpecError

SPEC_VERSION = 1


def _literal(values: list[str]) -> Any:
    return Literal[tuple(values)]


def _section(registry: Registry[Any], extra: dict[str, Any] | None = None) -> Any:
    """Discriminated union over the registry's components, keyed by `name`."""
    variants = []
    for name in registry:
        params = registry.parameters(name)
        fields: dict[str, Any] = {"name": (Literal[name], ...), **(extra or {})}
        variants.append(
            pydantic.create_model(
                f"{registry.kind.title()}Spec_{name.replace('-', '_')}",
                __base__=params,
                __doc__=(registry.get(name).__doc__ or "").strip().split("\n")[0],
                **fields,
            )
        )
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="name")]  # noqa: UP007


Text = Annotated[str, Field(max_length=2000)]


SECTIONS: dict[str, Registry[Any]] = {
    "architecture": ARCHITECTURES,
    "weighting": WEIGHTINGS,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
}


@cache
def spec_model() -> type[StrictModel]:
    """The model of a whole spec file."""
    backbone = (_literal(BACKBONES.names()), Field(description="registered backbone"))
    fields: dict[str, Any] = {
        "spec_version": (Literal[SPEC_VERSION], Field(description="version of the spec format")),
        "name": (
            Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")],
            ...,
        ),
        "description": (Text, ""),
        "authors": (
            Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=50)],
            [],
        ),
        "benchmark": (_literal(BENCHMARKS.names()), Field(description="registered benchmark")),
        "protocol_version": (
            Annotated[int, Field(ge=1, le=10_000)] | None,
            Field(None, description="protocol version; the benchmark's latest when omitted"),
        ),
        "architecture": (_section(ARCHITECTURES, {"backbone": backbone}), ...),
        "weighting": (_section(WEIGHTINGS), ...),
        "optimizer": (_section(OPTIMIZERS), ...),
        "scheduler": (_section(SCHEDULERS) | None, None),
    }
    model: type[StrictModel] = pydantic.create_model("Spec", __base__=StrictModel, **fields)
    return model


def json_schema() -> dict[str, Any]:
    schema = spec_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "MTL Leaderboard spec"
    return schema


@dataclass(frozen=True)
class ValidSpec:
    """A validated spec: its normalised form (defaults written out) and content hash."""

    normalised: dict[str, Any]
    spec_hash: str

    @property
    def benchmark(self) -> str:
        return str(self.normalised["benchmark"])


def content_hash(normalised: dict[str, Any]) -> str:
    """sha256 of canonical JSON: key order, formatting and implicit defaults do not matter."""
    canonical = json.dumps(normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def validate(document: dict[str, Any]) -> tuple[ValidSpec | None, list[SpecError]]:
    """Check a parsed spec; return it normalised, or every problem found."""
    try:
        model = spec_model().model_validate(document)
    except pydantic.ValidationError as e:
        return None, [_problem(err) for err in e.errors()]
    normalised = model.model_dump(mode="json")
    problems = check_protocol(normalised)
    if problems:
        return None, problems
    return ValidSpec(normalised, content_hash(normalised)), []


def check_protocol(spec: dict[str, Any]) -> list[SpecError]:
    """What the benchmark's protocol allows; fills in protocol_version when omitted."""
    benchmark = BENCHMARKS.get(spec["benchmark"])
    if spec["protocol_version"] is None:
        spec["protocol_version"] = benchmark.latest_version
    if spec["protocol_version"] not in benchmark.protocols:
        known = ", ".join(str(v) for v in sorted(benchmark.protocols))
        return [
            SpecError(
                "protocol_version",
                f"{benchmark.name} has no protocol version {spec['protocol_version']}"
                f" (known: {known})",
            )
        ]
    protocol = benchmark.protocol(spec["protocol_version"])
    problems = []
    arch = ARCHITECTURES.get(spec["architecture"]["name"])
    if spec["architecture"]["backbone"] not in protocol.backbones:
        problems.append(
            SpecError(
                "architecture.backbone",
                f"{spec['architecture']['backbone']!r} is not allowed by {benchmark.name}"
                f" v{protocol.version} (allowed: {', '.join(protocol.backbones)})",
            )
        )
    if arch.allowed_weightings is not None and spec["weighting"]["name"] not in (
        arch.allowed_weightings
    ):
        problems.append(
            SpecError(
                "weighting.name",
                f"architecture {spec['architecture']['name']!r} cannot use weighting"
                f" {spec['weighting']['name']!r}"
                f" (allowed: {', '.join(sorted(arch.allowed_weightings))})",
            )
        )
    lr = spec["optimizer"].get("lr")
    if lr is not None and lr > protocol.max_lr:
        problems.append(
            SpecError("optimizer.lr", f"{lr} exceeds the protocol's maximum of {protocol.max_lr}")
        )
    return problems


def _problem(error: Any) -> SpecError:
    """One pydantic error -> a SpecError naming the field, with name suggestions."""
    loc = [str(part) for part in error["loc"]]
    kind = error["type"]
    if kind == "union_tag_invalid":
        ctx = error["ctx"]
        known = re.findall(r"'([^']*)'", ctx["expected_tags"])
        section = ".".join(loc)
        return SpecError(
            f"{section}.name",
            f"unknown {section} {ctx['tag']!r}{suggestion(str(ctx['tag']), known)}",
        )
    if kind == "union_tag_not_found":
        return SpecError(".".join(loc) + ".name", "missing: every section needs a name")
    # Pydantic puts the union member's tag in the location: weighting.dwa.temperature.
    if len(loc) > 1 and loc[0] in SECTIONS and loc[1] in SECTIONS[loc[0]]:
        del loc[1]
    field = ".".join(loc)
    if kind == "literal_error":
        known = re.findall(r"'([^']*)'", error["ctx"]["expected"])
        return SpecError(
            field, f"unknown value {error['input']!r}{suggestion(str(error['input']), known)}"
        )
    if kind == "missing":
        return SpecError(field, "missing required field")
    if kind == "extra_forbidden":
        return SpecError(field, "unknown field")
    return SpecError(field, error["msg"])
