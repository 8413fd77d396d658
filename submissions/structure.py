"""The structure of a spec without the registries: fast rejection for `mtlb validate`.

Building the spec model (`submissions.spec.spec_model`) imports every
registered component, and with them torch: seconds, for a file whose problem
is a misspelt key.  `components.json` (beside this module, generated from the
live registries by `python -m submissions.structure --write`, and kept equal
to them by tests/submissions/test_structure.py) lists the benchmarks, each
section's components and each component's parameter names, and `schema.json`
the spec's JSON Schema.  `structural_problems` checks names only — keys,
component names, parameter names — with the messages the full validator gives;
a file with none of those problems is then validated in full.
"""

from __future__ import annotations

import difflib
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from submissions.loader import SpecError, clip, printable, read, shown
from submissions.messages import MAX_PROBLEMS

HERE = Path(__file__).resolve().parent
COMPONENTS = HERE / "components.json"
SCHEMA = HERE / "schema.json"
SECTIONS = ("architecture", "weighting", "optimizer", "scheduler")


def suggestion(name: str, known: list[str]) -> str:
    """As `runners.registry.suggestion` (which imports pydantic); a test keeps them equal."""
    close = [repr(c) for c in difflib.get_close_matches(name, known, n=3, cutoff=0.5)]
    if close:
        listed = close[0] if len(close) == 1 else ", ".join(close[:-1]) + " or " + close[-1]
        return f"; did you mean {listed}?"
    return "; valid names: " + ", ".join(repr(k) for k in sorted(known))


@cache
def components() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COMPONENTS.read_text(encoding="utf-8"))
    return loaded


def live_components() -> dict[str, Any]:
    """What `components.json` must hold, from the registries (imports torch)."""
    from submissions import spec

    model = spec.spec_model()
    return {
        "fields": sorted(model.model_fields),
        "required": sorted(n for n, f in model.model_fields.items() if f.is_required()),
        "benchmarks": spec.BENCHMARKS.names(),
        "sections": {
            section: {name: sorted(registry.parameters(name).model_fields) for name in registry}
            for section, registry in spec.SECTIONS.items()
        },
    }


def structural_problems(document: dict[str, Any]) -> list[SpecError]:
    """Unknown or missing keys, unknown benchmark, component and parameter names.

    Only problems whose message is certain without the registries; anything
    else (types, bounds, the protocol) is left to `submissions.spec.validate`.
    """
    known = components()
    problems = []
    for key in document:
        if key not in known["fields"]:
            problems.append(SpecError(key, "unknown field"))
    for key in known["required"]:
        if key not in document:
            problems.append(SpecError(key, "missing required field"))
    benchmark = document.get("benchmark")
    if isinstance(benchmark, str) and benchmark not in known["benchmarks"]:
        problems.append(
            SpecError(
                "benchmark",
                f"unknown value {shown(benchmark)}"
                f"{suggestion(clip(benchmark), known['benchmarks'])}",
            )
        )
    for section in SECTIONS:
        value = document.get(section)
        if not isinstance(value, dict):
            continue
        name = value.get("name")
        registered = known["sections"][section]
        if "name" not in value:
            problems.append(SpecError(f"{section}.name", "missing: every section needs a name"))
        elif isinstance(name, str) and name not in registered:
            problems.append(
                SpecError(
                    f"{section}.name",
                    f"unknown {section} {shown(name)}{suggestion(clip(name), list(registered))}",
                )
            )
        elif isinstance(name, str):
            allowed = {
                "name",
                *registered[name],
                *(["backbone"] if section == "architecture" else []),
            }
            for key in value:
                if key not in allowed:
                    problems.append(SpecError(f"{section}.{key}", _unknown_parameter(section, key)))
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        problems = [*problems[:MAX_PROBLEMS], SpecError("", f"and {more} more problem(s)")]
    return problems


def problem_lines(path: Path, problems: list[SpecError]) -> list[str]:
    """One line per problem, naming the file and the field."""
    shown_path = printable(str(path))
    return [
        f"{shown_path}: {p.field}: {p.message}" if p.field else f"{shown_path}: {p.message}"
        for p in problems
    ]


def quick_check(path: Path) -> tuple[dict[str, Any] | None, str, list[SpecError]]:
    """(document, source, problems) from reading and the structural check alone: no torch."""
    try:
        document, source = read(path)
    except SpecError as e:
        return None, "", [e]
    return document, source, structural_problems(document)


def _unknown_parameter(section: str, key: str) -> str:
    if section == "weighting" and key == "seed":
        from submissions.messages import NO_SEED

        return NO_SEED
    return "unknown field"


def main() -> None:
    """`python -m submissions.structure --write`: regenerate components.json and schema.json."""
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m submissions.structure --write")
    from submissions.spec import json_schema

    COMPONENTS.write_text(json.dumps(live_components(), indent=1, sort_keys=True) + "\n")
    SCHEMA.write_text(json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
