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
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import Field
from pydantic_core import PydanticCustomError

import runners.models
import runners.weighting  # noqa: F401  (registers weighting methods)
from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES, BACKBONES, BackboneChoice
from runners.optim import OPTIMIZERS, SCHEDULERS
from runners.protocol_checks import SECTIONS, protocol_problems
from runners.registry import Registry, StrictModel, suggestion
from runners.weighting import WEIGHTINGS
from submissions import search
from submissions.loader import SpecError, clip, shown
from submissions.messages import MAX_PROBLEMS, NO_SEED

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


def _backbone() -> Any:
    """A registered backbone: its name (all its parameters at their defaults) or a section.

    Both forms are normalised to `BackboneChoice.canonical` (see `validate`).
    """
    section = _section(BACKBONES)
    return Annotated[
        section,
        pydantic.BeforeValidator(
            lambda value: {"name": value} if isinstance(value, str) else value,
            json_schema_input_type=Union[_literal(BACKBONES.names()), section],  # noqa: UP007
        ),
        Field(description="registered backbone: its name, or {name, ...its parameters}"),
    ]


def _visible(text: str, allowed: str = "") -> str:
    """`text` if it holds no invisible or direction-changing character (Unicode Cf, Cc, ...).

    Names, descriptions and authors are shown on the site and in tables: a
    right-to-left override (U+202E), a zero-width space (U+200B) or a byte
    order mark (U+FEFF) would make one name look like another, or reorder
    what follows it.  The rule is the submitter's (`str.isprintable`); a
    description may also break lines (`allowed`).
    """
    for character in text:
        if not character.isprintable() and character not in allowed:
            name = unicodedata.name(character, unicodedata.category(character))
            raise PydanticCustomError(
                "invisible_character",
                "character U+{code} ({name}) is not allowed: invisible and direction-changing"
                " characters could make one name look like another",
                {"code": f"{ord(character):04X}", "name": name},
            )
    return text


Name = Annotated[str, Field(min_length=1, max_length=100), pydantic.AfterValidator(_visible)]
Text = Annotated[
    str,
    Field(max_length=2000),
    pydantic.AfterValidator(lambda text: _visible(text, allowed="\n\t\r")),
]
Author = Annotated[str, Field(max_length=200), pydantic.AfterValidator(_visible)]


@cache
def spec_model() -> type[StrictModel]:
    """The model of a whole spec file."""
    backbone = (_backbone(), ...)
    fields: dict[str, Any] = {
        "spec_version": (Literal[SPEC_VERSION], Field(description="version of the spec format")),
        "name": (Name, ...),
        "description": (Text, ""),
        "authors": (Annotated[list[Author], Field(max_length=50)], []),
        "benchmark": (_literal(BENCHMARKS.names()), Field(description="registered benchmark")),
        "protocol_version": (
            Annotated[int, Field(ge=1, le=10_000)] | None,
            Field(None, description="protocol version; the benchmark's latest when omitted"),
        ),
        "architecture": (_section(ARCHITECTURES, {"backbone": backbone}), ...),
        "weighting": (_section(WEIGHTINGS), ...),
        "optimizer": (_section(OPTIMIZERS), ...),
        "scheduler": (_section(SCHEDULERS) | None, None),
        # Omitted from the normalised spec when absent, so older specs keep their hash.
        "search": (search.SearchSpace | None, None),
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
    """A validated spec: its normalised form (defaults written out), its content hash and the
    hash of its training set-up (`setup_hash`)."""

    normalised: dict[str, Any]
    spec_hash: str
    setup_hash: str

    @property
    def benchmark(self) -> str:
        return str(self.normalised["benchmark"])


def content_hash(normalised: dict[str, Any]) -> str:
    """sha256 of canonical JSON: key order, formatting and implicit defaults do not matter."""
    canonical = json.dumps(normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# What a spec says about itself rather than about what is trained.
NOT_SETUP = ("name", "description", "authors")


def setup_hash(normalised: dict[str, Any]) -> str:
    """sha256 of the training set-up alone: the spec without its name, description and authors.

    Two specs with one set-up (components, parameters, search space, protocol
    version) train the same thing; the second is not trained again.  A stored
    spec from before stochastic methods lost their `seed` parameter carries
    `seed: 0`, which is what every such method now uses: it is dropped, so the
    old spec and its new form share a set-up.  `db/migrations/versions/0004_*`
    computes the same for stored submissions.
    """
    setup = {key: value for key, value in normalised.items() if key not in NOT_SETUP}
    weighting = setup.get("weighting")
    if isinstance(weighting, dict) and weighting.get("seed") == 0:
        setup["weighting"] = {k: v for k, v in weighting.items() if k != "seed"}
    return content_hash(setup)


def validate(document: dict[str, Any]) -> tuple[ValidSpec | None, list[SpecError]]:
    """Check a parsed spec; return it normalised, or every problem found."""
    try:
        model = spec_model().model_validate(document)
    except pydantic.ValidationError as e:
        errors = e.errors()
        problems = [_problem(err) for err in errors[:MAX_PROBLEMS]]
        if len(errors) > MAX_PROBLEMS:
            problems.append(SpecError("", f"and {len(errors) - MAX_PROBLEMS} more problem(s)"))
        return None, problems
    normalised = model.model_dump(mode="json")
    architecture = normalised["architecture"]
    architecture["backbone"] = BackboneChoice.from_spec(architecture["backbone"]).canonical()
    search.normalise(normalised)
    problems = check_protocol(normalised)
    if problems:
        return None, problems
    return ValidSpec(normalised, content_hash(normalised), setup_hash(normalised)), []


def check_protocol(spec: dict[str, Any]) -> list[SpecError]:
    """What the benchmark's protocol allows; fills in protocol_version when omitted.

    The rules are `runners.protocol_checks.protocol_problems`, which the worker
    applies again before it trains; then the search space, if any.
    """
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
    problems = [SpecError(p.field, p.message) for p in protocol_problems(spec, benchmark, protocol)]
    # The search space, once the spec's own values are known to be good.
    if not problems:
        problems += search.check(spec, benchmark, protocol)
    return problems


def _problem(error: Any) -> SpecError:
    """One pydantic error -> a SpecError naming the field, with name suggestions."""
    loc = [str(part) for part in error["loc"]]
    kind = error["type"]
    # Pydantic puts the union member's tag in the location: weighting.dwa.temperature,
    # architecture.mtan.backbone.segnet.width_multiplier.
    if len(loc) > 1 and loc[0] in SECTIONS and loc[1] in SECTIONS[loc[0]]:
        del loc[1]
    if len(loc) > 2 and loc[:2] == ["architecture", "backbone"] and loc[2] in BACKBONES:
        del loc[2]
    if len(loc) > 2 and loc[0] == "search" and loc[2] in ("range", "choices"):
        del loc[2]  # the search dimension's tag
    if kind == "too_long" and loc == ["search"]:
        return SpecError("search", f"at most {search.MAX_PARAMETERS} parameters may be searched")
    if kind == "union_tag_invalid" and loc == ["architecture", "backbone"]:
        tag = error["ctx"]["tag"]
        known = BACKBONES.names()
        return SpecError(
            "architecture.backbone",
            f"unknown value {shown(tag)}{suggestion(clip(str(tag)), known)}",
        )
    if kind == "union_tag_invalid":
        ctx = error["ctx"]
        known = re.findall(r"'([^']*)'", ctx["expected_tags"])
        section = ".".join(loc)
        return SpecError(
            f"{section}.name",
            f"unknown {section} {shown(ctx['tag'])}{suggestion(clip(str(ctx['tag'])), known)}",
        )
    if kind == "union_tag_not_found":
        return SpecError(".".join(loc) + ".name", "missing: every section needs a name")
    field = ".".join(loc)
    if kind == "literal_error":
        known = re.findall(r"'([^']*)'", error["ctx"]["expected"])
        if not known:  # not names: spec_version
            return SpecError(
                field, f"unknown value {shown(error['input'])}; expected {error['ctx']['expected']}"
            )
        return SpecError(
            field,
            f"unknown value {shown(error['input'])}{suggestion(clip(str(error['input'])), known)}",
        )
    if kind == "missing":
        return SpecError(field, "missing required field")
    if kind == "extra_forbidden" and field == "weighting.seed":
        return SpecError(field, NO_SEED)
    if kind == "extra_forbidden":
        return SpecError(field, "unknown field")
    return SpecError(field, error["msg"])
