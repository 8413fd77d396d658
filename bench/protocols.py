"""Helpers of the bench scripts: a benchmark with a shortened protocol, recorded steps."""

from __future__ import annotations

import dataclasses
from typing import Any

import runners.train
from runners.benchmarks import BENCHMARKS
from runners.step import TrainingStep, describe


def shortened(name: str, epochs: int | None, version: int = 1) -> str:
    """The name of `name` v`version` with `epochs` epochs, registered for this process.

    None: `name` itself.  The copy renders and caches the same data (same family).
    """
    if epochs is None:
        return name
    benchmark = BENCHMARKS.get(name)
    protocol = dataclasses.replace(benchmark.protocol(version), epochs=epochs, version=1)
    copy_name = f"{name}-{epochs}-epochs"
    if copy_name not in BENCHMARKS:
        copy = type(benchmark)(copy_name, f"{name} v{version}, {epochs} epochs", {1: protocol})  # type: ignore[call-arg]
        BENCHMARKS._entries[copy_name] = copy
    return copy_name


def record_steps() -> list[TrainingStep]:
    """The `TrainingStep`s that `runners.train.train` makes from now on, to report their plans."""
    made: list[TrainingStep] = []

    class Recorded(TrainingStep):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    runners.train.TrainingStep = Recorded  # type: ignore[misc]
    return made


def plan_text(step: TrainingStep) -> str:
    info = describe(step)
    text = f"{info['plan']} ({info['replays']} replays)"
    return text + (f", capture failed: {info['graph_failure']}" if info["graph_failure"] else "")
