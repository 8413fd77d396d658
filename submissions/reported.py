"""Reported-results files: reading, checking against a benchmark, importing.

A file (YAML or JSON, read by the strict `submissions.loader`) lists results
reported in papers for one benchmark version; see
`submissions/reported/README.md` for the format.  Every entry is checked
against the benchmark's tasks and metrics before anything is stored: an
unknown task or metric, a task without its headline metric, a value that is
not a finite number or is outside its metric's range (a percentage where
`runners.metrics` gives a fraction) is one line naming the file and the
field, and then nothing of any file is stored.

Units are those of `runners.metrics`, and nothing is converted: mIoU, pixel
accuracy and the `within_*` normal metrics are fractions in [0, 1], angles
are degrees in [0, 180], depth errors are non-negative.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.models import Role
from db.reported import ReportedEntry, ReportedValue, StoredReported, store_reported, web_url
from runners.benchmarks import BENCHMARKS
from runners.registry import UnknownComponentError
from submissions.loader import SpecError, printable, read, shown

BUILTIN = Path(__file__).resolve().parent / "reported"
"""The reported-results files shipped with the platform (`mtlb reported import --builtin`)."""

# The range of each metric of runners.metrics, in its units (see the module docstring).
FRACTION = (0.0, 1.0)
RANGES: dict[str, tuple[float, float]] = {
    "miou": FRACTION,
    "pixel_acc": FRACTION,
    "within_11_25": FRACTION,
    "within_22_5": FRACTION,
    "within_30": FRACTION,
    "mean_angle": (0.0, 180.0),
    "median_angle": (0.0, 180.0),
    "abs_err": (0.0, math.inf),
    "rel_err": (0.0, math.inf),
}
UNITS = {FRACTION: "a fraction", (0.0, 180.0): "degrees"}

TOP_FIELDS = {"benchmark", "protocol_version", "results"}
REQUIRED = ("name", "architecture", "weighting", "backbone", "citation", "metrics")
OPTIONAL = ("url", "role", "note")
_IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
_LIMITS = {"name": 200, "citation": 1000, "url": 1000, "note": 4000}


class ReportedError(ValueError):
    """A problem with a reported-results file: '<file>: <field>: <message>', one line."""


def _text(entry: dict[str, Any], key: str, where: str, required: bool) -> str:
    value = entry.get(key, None if required else "")
    if value is None:
        raise SpecError(f"{where}.{key}", "missing")
    if not isinstance(value, str):
        raise SpecError(f"{where}.{key}", f"must be a string, got {shown(value)}")
    value = value.strip()
    if required and not value:
        raise SpecError(f"{where}.{key}", "must not be empty")
    limit = _LIMITS.get(key, 100)
    if len(value) > limit:
        raise SpecError(f"{where}.{key}", f"longer than {limit} characters")
    if key == "url" and value and not web_url(value):
        # The site links to it: only a web page, never javascript: or data:.
        raise SpecError(
            f"{where}.url", f"must be an http:// or https:// address, got {shown(value)}"
        )
    if key in ("architecture", "weighting", "backbone") and not _IDENTIFIER.fullmatch(value):
        raise SpecError(
            f"{where}.{key}", f"must be a component name like 'hard-sharing', got {shown(value)}"
        )
    return value


def _number(value: object, field: str, metric: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(field, f"must be a number, got {shown(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise SpecError(field, f"must be finite, got {number}")
    low, high = RANGES.get(metric, (-math.inf, math.inf))
    if not low <= number <= high:
        unit = UNITS.get((low, high))
        hint = f"; runners.metrics gives {metric} as {unit}" if unit else ""
        if (low, high) == FRACTION:
            hint += f" (write {number / 100:g} for {number:g}%)"
        raise SpecError(field, f"{number:g} is outside [{low:g}, {high:g}]{hint}")
    return number


def check_document(document: dict[str, Any], source_file: str = "") -> list[ReportedEntry]:
    """The entries of one file's document; raises SpecError (field: message) at the first one."""
    for key in document:
        if key not in TOP_FIELDS:
            raise SpecError(key, f"unknown field; expected {', '.join(sorted(TOP_FIELDS))}")
    name = document.get("benchmark")
    if not isinstance(name, str):
        raise SpecError("benchmark", f"must be a benchmark name, got {shown(name)}")
    try:
        benchmark = BENCHMARKS.get(name)
    except UnknownComponentError as e:
        raise SpecError("benchmark", str(e)) from None
    version = document.get("protocol_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise SpecError("protocol_version", f"must be an integer, got {shown(version)}")
    try:
        protocol = benchmark.protocol(version)
    except KeyError as e:
        raise SpecError("protocol_version", str(e.args[0])) from None
    results = document.get("results")
    if not isinstance(results, list) or not results:
        raise SpecError("results", "must be a non-empty list of entries")

    tasks = {t.name: t for t in benchmark.tasks}
    entries: list[ReportedEntry] = []
    seen: dict[tuple[str, str], str] = {}
    baselines: dict[str, str] = {}
    for i, entry in enumerate(results):
        where = f"results.{i}"
        if not isinstance(entry, dict):
            raise SpecError(where, f"must be a mapping, got {shown(entry)}")
        for key in entry:
            if key not in REQUIRED and key not in OPTIONAL:
                known = ", ".join([*REQUIRED, *OPTIONAL])
                raise SpecError(f"{where}.{key}", f"unknown field; expected one of {known}")
        text = {key: _text(entry, key, where, key in REQUIRED) for key in REQUIRED[:-1]}
        text.update({key: _text(entry, key, where, False) for key in ("url", "note")})
        role_name = entry.get("role", Role.METHOD.value)
        if role_name not in {r.value for r in Role}:
            raise SpecError(
                f"{where}.role", f"must be 'method' or 'baseline', got {shown(role_name)}"
            )
        role = Role(role_name)
        if text["backbone"] not in protocol.backbones:
            raise SpecError(
                f"{where}.backbone",
                f"{shown(text['backbone'])} is not a backbone of {name} v{version}"
                f" (allowed: {', '.join(protocol.backbones)})",
            )
        values = _check_metrics(entry.get("metrics"), f"{where}.metrics", tasks)
        if role is Role.BASELINE:
            zero = next((v for v in values if v.value == 0), None)
            if zero is not None:
                raise SpecError(
                    f"{where}.metrics.{zero.task}.{zero.metric}",
                    "a baseline value of 0 makes Δm undefined",
                )
            if text["backbone"] in baselines:
                raise SpecError(
                    f"{where}.role",
                    f"a second baseline for backbone {text['backbone']!r}"
                    f" (the first is {baselines[text['backbone']]})",
                )
            baselines[text["backbone"]] = where
        identity = (text["name"], text["citation"])
        if identity in seen:
            raise SpecError(where, f"same name and citation as {seen[identity]}")
        seen[identity] = where
        entries.append(
            ReportedEntry(
                benchmark=name,
                protocol_version=version,
                role=role,
                values=values,
                source_file=source_file,
                **text,
            )
        )
    return entries


def _check_metrics(metrics: object, where: str, tasks: dict[str, Any]) -> tuple[ReportedValue, ...]:
    if not isinstance(metrics, dict) or not metrics:
        raise SpecError(where, "must map each task to {metric: value}")
    for task_name in metrics:
        if task_name not in tasks:
            raise SpecError(
                f"{where}.{task_name}", f"unknown task; the benchmark's: {', '.join(tasks)}"
            )
    values = []
    for task_name, task in tasks.items():
        given = metrics.get(task_name)
        if given is None:
            raise SpecError(
                f"{where}.{task_name}",
                f"missing; every task needs at least its headline metric ({task.headline.name})",
            )
        if not isinstance(given, dict):
            raise SpecError(f"{where}.{task_name}", f"must map metric -> value, got {shown(given)}")
        known = {m.name: (position, m) for position, m in enumerate(task.metrics)}
        for metric_name in given:
            if metric_name not in known:
                raise SpecError(
                    f"{where}.{task_name}.{metric_name}",
                    f"unknown metric of {task_name}; known: {', '.join(known)}",
                )
        if task.headline.name not in given:
            raise SpecError(
                f"{where}.{task_name}.{task.headline.name}",
                "missing; it is the task's headline metric",
            )
        for metric_name, (position, metric) in known.items():
            if metric_name in given:
                field = f"{where}.{task_name}.{metric_name}"
                values.append(
                    ReportedValue(
                        task_name,
                        metric_name,
                        _number(given[metric_name], field, metric_name),
                        metric.higher_is_better,
                        position,
                    )
                )
    return tuple(values)


def check_file(path: Path) -> list[ReportedEntry]:
    """The checked entries of one file; raises ReportedError naming the file and field."""
    try:
        document, _ = read(path)
        return check_document(document, path.name)
    except SpecError as e:
        raise ReportedError(f"{printable(str(path))}: {e}") from None


def builtin_files() -> list[Path]:
    """The shipped files, in name order."""
    return sorted(p for p in BUILTIN.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def import_files(session: Session, paths: Sequence[Path]) -> list[StoredReported]:
    """Check every file, then store every entry; nothing is stored if any file has a problem.

    Raises ReportedError (the first problem).  Entries of different files
    with the same name and citation are the same result: the last one wins.
    """
    entries = [entry for path in paths for entry in check_file(path)]
    return store_reported(session, entries)


__all__ = [
    "BUILTIN",
    "RANGES",
    "ReportedError",
    "builtin_files",
    "check_document",
    "check_file",
    "import_files",
]
