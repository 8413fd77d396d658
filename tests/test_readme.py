"""The README's list of components is the registries' list: checked, so that neither drifts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runners.benchmarks import BENCHMARKS
from runners.models import BACKBONES
from runners.protocol_checks import SECTIONS
from runners.registry import Registry

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
REGISTRIES: dict[str, Registry] = {**SECTIONS, "backbone": BACKBONES}


def section(start: str, end: str) -> str:
    """The README's text from the line starting with `start` to the next starting with `end`."""
    found = re.search(rf"^{re.escape(start)}.*?(?=^{re.escape(end)})", README, re.M | re.S)
    assert found, f"README has no part from {start!r} to {end!r}"
    return found.group(0)


COMPONENTS = section("Components today", "## ")
NAMES = set(re.findall(r"`([^`]+)`", COMPONENTS))


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_registered_component_is_listed(kind: str) -> None:
    assert [name for name in REGISTRIES[kind] if name not in NAMES] == []


def test_every_listed_component_is_registered() -> None:
    # A name-like token (lower case, digits and hyphens) in the list must be a component.
    registered = {name for registry in REGISTRIES.values() for name in registry}
    listed = {n for n in NAMES if re.fullmatch(r"[a-z][a-z0-9-]*", n)}
    assert sorted(listed - registered) == []


def test_every_benchmark_is_described() -> None:
    described = set(re.findall(r"`([^`]+)`", section("## Benchmarks", "## ")))
    assert [name for name in BENCHMARKS if name not in described] == []
