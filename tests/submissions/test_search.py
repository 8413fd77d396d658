"""A spec's search space: what it may cover, one line per problem, and its place in the hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from runners.benchmarks import BENCHMARKS
from submissions import search
from submissions.loader import parse
from submissions.spec import json_schema, validate

BASE = """\
spec_version: 1
name: hps-dwa-tuned
benchmark: synthetic-scenes
architecture: {name: hard-sharing, backbone: small-cnn}
weighting: {name: dwa, temperature: 2.0}
optimizer: {name: adam, lr: 1.0e-3}
"""


def checked(search: str, base: str = BASE) -> tuple[dict[str, Any] | None, list[str]]:
    spec, problems = validate(parse((base + search).encode(), ".yaml"))
    assert (spec is None) == bool(problems)
    return (None if spec is None else spec.normalised), [str(p) for p in problems]


def test_a_good_search_space_is_normalised_into_the_spec() -> None:
    spec, problems = checked(
        "search:\n"
        "  optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n"
        "  weighting.temperature: {low: 1, high: 4}\n"
        "  architecture.head_width: {choices: [8, 16, 32]}\n"
    )
    assert problems == [] and spec is not None
    assert spec["search"] == {
        "optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True},
        # A float parameter's integer range is stored as floats: the search samples floats.
        "weighting.temperature": {"low": 1.0, "high": 4.0, "log": False},
        "architecture.head_width": {"choices": [8, 16, 32]},
    }
    assert isinstance(spec["search"]["weighting.temperature"]["low"], float)


def test_the_search_space_is_hashed_and_its_absence_keeps_old_hashes() -> None:
    def hashed(text: str) -> str:
        spec, problems = validate(parse(text.encode(), ".yaml"))
        assert spec is not None, problems
        return spec.spec_hash

    plain = hashed(BASE)
    # Without a search space, the normalised spec is what it was before search spaces
    # existed (no `search` key), so stored submissions keep their hash.
    before = {
        "spec_version": 1, "name": "hps-dwa-tuned", "description": "", "authors": [],
        "benchmark": "synthetic-scenes", "protocol_version": 2,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn", "head_width": 16},
        "weighting": {"name": "dwa", "temperature": 2.0},
        "optimizer": {"name": "adam", "lr": 0.001, "weight_decay": 0.0},
        "scheduler": None,
    }  # fmt: skip
    canonical = json.dumps(before, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert plain == hashlib.sha256(canonical.encode()).hexdigest()
    a = hashed(BASE + "search: {optimizer.lr: {low: 1.0e-4, high: 1.0e-2}}")
    b = hashed(BASE + "search: {optimizer.lr: {low: 1.0e-4, high: 2.0e-2}}")
    same_as_a = hashed(BASE + "search:\n  optimizer.lr: {high: 0.01, low: 0.0001, log: false}")
    assert len({plain, a, b}) == 3 and a == same_as_a


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        (
            "search: {optimizer.lr: {low: 1.0e-4, high: 0.5}}",
            "search.optimizer.lr: high 0.5: 0.5 exceeds the protocol's maximum of 0.1",
        ),
        (
            "search: {optimizer.lr: {low: 1.0e-4, high: 20.0}}",
            "search.optimizer.lr: high 20.0: Input should be less than or equal to 10",
        ),
        (
            "search: {weighting.temprature: {low: 1, high: 4}}",
            "search.weighting.temprature: weighting 'dwa' has no parameter 'temprature';"
            " did you mean 'temperature'?",
        ),
        (
            "search: {loss.scale: {low: 1, high: 4}}",
            "search.loss.scale: not <section>.<parameter> with a section among:"
            " architecture, weighting, optimizer, scheduler",
        ),
        (
            "search: {scheduler.min_lr: {low: 0.0, high: 0.1}}",
            "search.scheduler.min_lr: the spec has no scheduler",
        ),
        (
            "search: {optimizer.weight_decay: {low: 0.1, high: 0.5}}",
            "search.optimizer.weight_decay: the spec's own value 0.0 (the starting point)"
            " is not in the range",
        ),
        (
            "search: {weighting.temperature: {choices: [1.0, 4.0]}}",
            "search.weighting.temperature: the spec's own value 2.0 (the starting point)"
            " is not in the choices",
        ),
        (
            "search: {weighting.temperature: {low: 4.0, high: 1.0}}",
            "search.weighting.temperature: low (4.0) must be less than high (1.0)",
        ),
        (
            "search: {optimizer.weight_decay: {low: 0.0, high: 0.1, log: true}}",
            "search.optimizer.weight_decay: a log range needs low > 0, got 0.0",
        ),
        (
            "search: {architecture.head_width: {low: 8, high: 32.5}}",
            "search.architecture.head_width: head_width is an integer:"
            " low and high must be integers",
        ),
        (
            "search: {architecture.head_width: {low: 8, high: 5000}}",
            "search.architecture.head_width: high 5000: Input should be less than or equal to 256",
        ),
        (
            "search: {architecture.head_width: {choices: [16, 16]}}",
            "search.architecture.head_width: choice 16 is listed twice",
        ),
        (
            "search: {optimizer.lr: 0.01}",
            "search.optimizer.lr: expected {low, high, log} or {choices: [...]}",
        ),
        (
            "search: {optimizer.lr: {low: 1.0e-4}}",
            "search.optimizer.lr.high: missing required field",
        ),
        (
            "search: {optimizer.lr: {low: 1.0e-4, high: 1.0e-2, step: 2}}",
            "search.optimizer.lr.step: unknown field",
        ),
        (
            "search: {optimizer.lr: {choices: [0.001]}}",
            "search.optimizer.lr.choices: List should have at least 2 items after validation,"
            " not 1",
        ),
    ],
)
def test_a_bad_search_space_gets_one_line_naming_the_problem(search: str, expected: str) -> None:
    spec, problems = checked(search)
    assert spec is None
    assert problems == [expected]


def test_every_problem_of_a_search_space_is_listed() -> None:
    _, problems = checked(
        "search:\n"
        "  optimizer.lr: {low: 1.0e-4, high: 0.5}\n"
        "  weighting.temperature: {low: 3.0, high: 4.0}\n"
    )
    assert problems == [
        "search.optimizer.lr: high 0.5: 0.5 exceeds the protocol's maximum of 0.1",
        "search.weighting.temperature: the spec's own value 2.0 (the starting point)"
        " is not in the range",
    ]


def test_at_most_four_parameters_and_a_protocol_with_a_budget() -> None:
    _, problems = checked(
        "search:\n"
        "  optimizer.lr: {low: 1.0e-4, high: 1.0e-2}\n"
        "  optimizer.weight_decay: {low: 0.0, high: 0.1}\n"
        "  weighting.temperature: {low: 1.0, high: 4.0}\n"
        "  architecture.head_width: {choices: [8, 16]}\n"
        "  architecture.name: {choices: [a, b]}\n"
    )
    assert problems == ["search: at most 4 parameters may be searched"]
    # A protocol version without a trial budget allows no search at all.
    spec, _ = checked("search: {optimizer.lr: {low: 1.0e-4, high: 1.0e-2}}")
    assert spec is not None
    benchmark = BENCHMARKS.get("synthetic-scenes")
    no_budget = dataclasses.replace(benchmark.protocol(1), tuning_trials=0)
    assert [str(p) for p in search.check(spec, benchmark, no_budget)] == [
        "search: synthetic-scenes v1 allows no tuning (no trial budget)"
    ]


def test_a_choice_of_another_type_is_not_the_spec_s_value() -> None:
    # True == 1 in Python; a boolean is not the integer choice 1.
    base = BASE.replace("{name: adam, lr: 1.0e-3}", "{name: sgd, lr: 1.0e-2, nesterov: true}")
    _, problems = checked("search: {optimizer.nesterov: {choices: [1, 0]}}", base)
    assert problems[0].startswith("search.optimizer.nesterov: choice 1: Input should be a valid")
    spec, problems = checked("search: {optimizer.nesterov: {choices: [true, false]}}", base)
    assert problems == [] and spec is not None


def test_the_json_schema_describes_search_spaces() -> None:
    schema = json_schema()
    assert "search" in schema["properties"]
    assert schema["properties"]["search"]["anyOf"][0]["maxProperties"] == 4
