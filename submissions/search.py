"""A spec's search space: which of its own parameters equal-budget tuning may vary.

```yaml
search:
  optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
  weighting.temperature: {choices: [1.0, 2.0, 4.0]}
```

Each key is `<section>.<parameter>`, a keyword parameter of the component the
spec names in that section; each value a range (numbers; `log` samples
log-uniformly) or a list of choices.  Every value the search can reach must be
one the component and the protocol accept (the field's bounds, the protocol's
maximum learning rate and model size), and the spec's own value, the search's
starting point, must be one of them.  The protocol fixes the trial budget
(`Protocol.tuning_trials`); `runners.tuning` runs the search.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

import pydantic
from pydantic import Discriminator, Field, Tag

from runners.benchmarks import Benchmark, Protocol
from runners.protocol_checks import SECTIONS, protocol_problems
from runners.registry import StrictModel, suggestion
from submissions.loader import SpecError, clip, shown

MAX_PARAMETERS = 4  # searched parameters per spec: the budget is a handful of trials
MAX_CHOICES = 20


class SearchRange(StrictModel):
    """Numbers from low to high, both included; log: sampled log-uniformly."""

    low: int | float
    high: int | float
    log: bool = False


class SearchChoices(StrictModel):
    """One of a list of values."""

    choices: Annotated[
        list[Annotated[str, Field(max_length=100)] | int | float | bool],
        Field(min_length=2, max_length=MAX_CHOICES),
    ]


def _kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "choices" if "choices" in value else "range"
    if isinstance(value, SearchRange | SearchChoices):
        return "choices" if isinstance(value, SearchChoices) else "range"
    return None


Dimension = Annotated[
    Union[Annotated[SearchRange, Tag("range")], Annotated[SearchChoices, Tag("choices")]],  # noqa: UP007
    Discriminator(
        _kind,
        custom_error_type="search_dimension",
        custom_error_message="expected {low, high, log} or {choices: [...]}",
    ),
]

SearchSpace = Annotated[
    dict[Annotated[str, Field(max_length=100)], Dimension],
    Field(
        min_length=1,
        max_length=MAX_PARAMETERS,
        description="parameters to tune, as <section>.<parameter>: a range or choices",
    ),
]


def normalise(spec: dict[str, Any]) -> None:
    """Drop an absent search (so that specs without one keep their hash); floats as floats.

    A float parameter's range written with integers (`{low: 1, high: 4}`) is
    stored as floats, so that the search samples floats and equal spaces hash alike.
    """
    if spec.get("search") is None:
        spec.pop("search", None)
        return
    for path, dimension in spec["search"].items():
        field = _field(spec, path)
        if field is None or field[1].annotation is not float:
            continue
        if "choices" in dimension:
            dimension["choices"] = [float(v) if type(v) is int else v for v in dimension["choices"]]
        else:
            for end in ("low", "high"):
                dimension[end] = float(dimension[end])


def _field(spec: dict[str, Any], path: str) -> tuple[str, Any] | None:
    """(component name, pydantic field) of `<section>.<parameter>`, or None if it has none."""
    section, _, parameter = path.partition(".")
    component = spec.get(section) if section in SECTIONS else None
    if not isinstance(component, dict):
        return None
    fields = SECTIONS[section].parameters(component["name"]).model_fields
    if parameter not in fields:
        return None
    return str(component["name"]), fields[parameter]


def _params(component: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in component.items() if k not in ("name", "backbone")}


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same kind: True is not the choice 1, nor 1 the choice 1.0's kin."""
    return type(a) is type(b) and a == b


def check(spec: dict[str, Any], benchmark: Benchmark, protocol: Protocol) -> list[SpecError]:
    """Every problem of a normalised spec's search space, one line each (none without one)."""
    search = spec.get("search")
    if not search:
        return []
    if protocol.tuning_trials < 1:
        return [
            SpecError(
                "search", f"{benchmark.name} v{protocol.version} allows no tuning (no trial budget)"
            )
        ]
    problems = []
    for path, dimension in search.items():
        problems += _dimension_problems(spec, benchmark, protocol, path, dimension)
    return problems


def _dimension_problems(
    spec: dict[str, Any],
    benchmark: Benchmark,
    protocol: Protocol,
    path: str,
    dimension: dict[str, Any],
) -> list[SpecError]:
    where = f"search.{path}"
    section, dot, parameter = path.partition(".")
    if not dot or section not in SECTIONS:
        sections = ", ".join(SECTIONS)
        return [SpecError(where, f"not <section>.<parameter> with a section among: {sections}")]
    component = spec.get(section)
    if not isinstance(component, dict):
        return [SpecError(where, f"the spec has no {section}")]
    name = component["name"]
    model = SECTIONS[section].parameters(name)
    if parameter not in model.model_fields:
        known = list(model.model_fields)
        hint = suggestion(clip(parameter), known) if known else "; it has no parameters"
        return [SpecError(where, f"{section} {name!r} has no parameter {shown(parameter)}{hint}")]
    kind = model.model_fields[parameter].annotation
    own = component[parameter]
    if "choices" in dimension:
        reached = list(dimension["choices"])
        labels = ["choice"] * len(reached)
        repeated = [v for i, v in enumerate(reached) if any(_same(v, w) for w in reached[:i])]
        if repeated:
            return [SpecError(where, f"choice {shown(repeated[0])} is listed twice")]
        starts = any(_same(own, v) for v in reached)
    else:
        low, high = dimension["low"], dimension["high"]
        if kind not in (int, float):
            takes = f"{parameter} takes {_type(kind)}: list its choices instead"
            return [SpecError(where, f"a range needs a number parameter; {takes}")]
        if kind is int and not (isinstance(low, int) and isinstance(high, int)):
            return [SpecError(where, f"{parameter} is an integer: low and high must be integers")]
        if not low < high:
            return [SpecError(where, f"low ({low}) must be less than high ({high})")]
        if dimension.get("log") and low <= 0:
            return [SpecError(where, f"a log range needs low > 0, got {low}")]
        reached, labels = [low, high], ["low", "high"]
        starts = low <= own <= high
    problems = []
    for label, value in zip(labels, reached, strict=True):
        problem = _value_problem(model, component, parameter, value)
        if problem is None:
            problem = _protocol_problem(spec, benchmark, protocol, section, parameter, value)
        if problem is not None:
            problems.append(SpecError(where, f"{label} {shown(value)}: {problem}"))
    if not starts:
        what = "choices" if "choices" in dimension else "range"
        problems.append(
            SpecError(
                where,
                f"the spec's own value {shown(own)} (the starting point) is not in the {what}",
            )
        )
    return problems


def _type(kind: Any) -> str:
    return getattr(kind, "__name__", None) or clip(str(kind))


def _value_problem(
    model: type[StrictModel], component: dict[str, Any], parameter: str, value: Any
) -> str | None:
    """Why the component refuses `value` for `parameter` (its type and bounds), or None."""
    try:
        model.model_validate({**_params(component), parameter: value})
    except pydantic.ValidationError as e:
        return str(e.errors()[0]["msg"])
    return None


def _protocol_problem(
    spec: dict[str, Any],
    benchmark: Benchmark,
    protocol: Protocol,
    section: str,
    parameter: str,
    value: Any,
) -> str | None:
    """What the protocol says of the spec with one searched value (the spec's own values pass)."""
    reached = {**spec, section: {**spec[section], parameter: value}}
    found = protocol_problems(reached, benchmark, protocol)
    return found[0].message if found else None
