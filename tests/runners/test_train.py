"""The training loop, over every registered architecture and weighting method."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch
from torch import nn

import runners.train
from db.models import JobState
from runners.benchmarks import BENCHMARKS
from runners.benchmarks.synthetic_scenes import SyntheticScenes
from runners.benchmarks.synthetic_shapes import SyntheticShapes
from runners.jobs import execute
from runners.models import ARCHITECTURES, MultiTaskModel
from runners.models.base import BackboneChoice
from runners.protocol_checks import model_from_spec, parameter_count
from runners.train import Diverged, train
from runners.weighting import WEIGHTINGS, LossWeighting
from submissions.spec import validate

MINI = BENCHMARKS.get("synthetic-scenes-mini")
PROTOCOL = MINI.protocol(1)


def spec(architecture: str, weighting: str, **weighting_params: Any) -> dict[str, Any]:
    return {
        "benchmark": MINI.name,
        "protocol_version": 1,
        "architecture": {"name": architecture, "backbone": "small-cnn"},
        "weighting": {"name": weighting, **weighting_params},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }


def accepted(architecture: str, weighting: str) -> bool:
    """Whether the spec validator accepts the pair (with default parameters)."""
    spec_problems = validate({"spec_version": 1, "name": "pair", **spec(architecture, weighting)})[
        1
    ]
    return not spec_problems


# A few methods of each family: loss weighting, learnt weights, gradient surgery, a method on z.
FAMILY_WEIGHTINGS = ("equal", "uncertainty", "pcgrad", "mgda-ub")
# Every method with the architectures that span what a method is given (the baseline; a
# shared representation z; no z, so gradients w.r.t. the shared parameters: every method
# but those that only weight the losses, whose one backward pass never looks at z); every
# other architecture with the family subset.  The full product grows as architectures x
# methods and alone would outgrow the suite's time budget.
EVERY_METHOD = ("single-task", "hard-sharing")
WITHOUT_Z = "mtan"
COMBINATIONS = [
    (a, w)
    for a in ARCHITECTURES
    for w in WEIGHTINGS
    if (
        a in EVERY_METHOD
        or w in FAMILY_WEIGHTINGS
        or (a == WITHOUT_Z and not issubclass(WEIGHTINGS.get(w), LossWeighting))
    )
    and accepted(a, w)
]
# Image-level tasks of mixed type: every architecture with the family subset.
SHAPES_WEIGHTINGS = FAMILY_WEIGHTINGS


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_provides_representation_matches_forward(architecture: str) -> None:
    """The validator's answer (used to reject MGDA-UB without z) is what forward returns."""
    arch = ARCHITECTURES.get(architecture)
    model = model_from_spec({"name": architecture, "backbone": "small-cnn"}, MINI)
    z, _ = model(torch.zeros(1, 3, 32, 32))
    claimed = arch.provides_representation(
        tuple(t.name for t in MINI.tasks), BackboneChoice("small-cnn").encoder_type, {}
    )
    assert claimed == (z is not None)


def test_a_method_on_z_is_rejected_without_z() -> None:
    problems = validate({"spec_version": 1, "name": "x", **spec("mtan", "mgda-ub")})[1]
    assert [str(p) for p in problems] == [
        "weighting.name: weighting 'mgda-ub' works on a shared representation,"
        " which architecture 'mtan' does not have with these parameters"
    ]
    assert accepted("hard-sharing", "mgda-ub")


# The matrix of every architecture with every method runs on a tinier benchmark than the
# mini one: 8 scenes, batch 4, 2 epochs of 2 steps.  In the registry only while a test
# runs (monkeypatch), so nothing else ever lists it.
TINY = SyntheticScenes(
    "test-tiny-scenes",
    "synthetic-scenes-mini with 8 train / 8 test scenes, batch 4, 2 epochs (tests only).",
    {1: dataclasses.replace(PROTOCOL, train_size=8, test_size=8, epochs=2, batch_size=4)},
)


# The same for image-level tasks: synthetic-shapes-mini with 8 images, one epoch of 2 steps.
SHAPES_MINI = BENCHMARKS.get("synthetic-shapes-mini")
TINY_SHAPES = SyntheticShapes(
    "test-tiny-shapes",
    "synthetic-shapes-mini with 8 train / 8 test images, batch 4, 1 epoch (tests only).",
    {
        1: dataclasses.replace(
            SHAPES_MINI.protocol(1), train_size=8, test_size=8, epochs=1, batch_size=4
        )
    },
)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> list[tuple[nn.Module, dict[str, torch.Tensor]]]:
    """Register TINY and TINY_SHAPES; return the models `train` builds, with initial weights."""
    monkeypatch.setitem(BENCHMARKS._entries, TINY.name, TINY)
    monkeypatch.setitem(BENCHMARKS._entries, TINY_SHAPES.name, TINY_SHAPES)
    built: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []
    build = runners.train.build

    def spy(*args: Any, **kwargs: Any) -> Any:
        parts = build(*args, **kwargs)
        built.append((parts[0], {n: p.detach().clone() for n, p in parts[0].named_parameters()}))
        return parts

    monkeypatch.setattr(runners.train, "build", spy)
    return built


def combinations() -> list[Any]:
    scenes = [pytest.param(a, w, TINY, id=f"{a}-{w}") for a, w in COMBINATIONS]
    shapes = [
        pytest.param(a, w, TINY_SHAPES, id=f"{a}-{w}-shapes")
        for a in ARCHITECTURES
        for w in SHAPES_WEIGHTINGS
        if accepted(a, w)
    ]
    return scenes + shapes


@pytest.mark.parametrize(("architecture", "weighting", "benchmark"), combinations())
def test_every_combination_trains(
    architecture: str,
    weighting: str,
    benchmark: SyntheticScenes | SyntheticShapes,
    tiny: list[tuple[nn.Module, dict[str, torch.Tensor]]],
) -> None:
    torch.set_num_threads(1)
    protocol = benchmark.protocol(1)
    result = train({**spec(architecture, weighting), "benchmark": benchmark.name}, seed=0)
    assert set(result.metrics) == {t.name for t in benchmark.tasks}
    for task in benchmark.tasks:
        assert list(result.metrics[task.name]) == [m.name for m in task.metrics]
        assert all(math.isfinite(v) for v in result.metrics[task.name].values())
    # One mean loss and one mean task weight per task per epoch, all finite.
    for name in ("loss", "weight"):
        points = {(c.epoch, c.task) for c in result.curves if c.name == name}
        assert points == {(e, t.name) for e in range(protocol.epochs) for t in benchmark.tasks}
    assert all(math.isfinite(c.value) for c in result.curves)
    # Every task's own parameters and the shared ones have moved.
    [(model, initial)] = tiny
    assert isinstance(model, MultiTaskModel)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {"shared": model.shared_parameters()}
    groups.update({t.name: model.task_parameters(t.name) for t in benchmark.tasks})
    for group, params in groups.items():
        unchanged = [names[id(p)] for p in params if torch.equal(p.detach(), initial[names[id(p)]])]
        assert not unchanged, f"{group} parameters did not change: {unchanged[:3]}"


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_every_architecture_learns_on_the_mini_protocol(architecture: str) -> None:
    torch.set_num_threads(1)
    result = train(spec(architecture, "equal"), seed=0)
    for task in MINI.tasks:
        assert list(result.metrics[task.name]) == [m.name for m in task.metrics]
        assert all(math.isfinite(v) for v in result.metrics[task.name].values())
    losses = [c for c in result.curves if c.name == "loss"]
    weights = [c for c in result.curves if c.name == "weight"]
    # One loss and one task weight per task per epoch.
    assert len(losses) == len(weights) == PROTOCOL.epochs * len(MINI.tasks)
    # Training reduces the summed training loss over the run.
    first = sum(c.value for c in losses if c.epoch == 0)
    last = sum(c.value for c in losses if c.epoch == PROTOCOL.epochs - 1)
    assert last < first
    assert result.parameter_count > 0


def test_same_seed_same_metrics_other_seed_other_metrics() -> None:
    torch.set_num_threads(1)
    a = train(spec("hard-sharing", "pcgrad"), seed=1)
    b = train(spec("hard-sharing", "pcgrad"), seed=1)
    c = train(spec("hard-sharing", "pcgrad"), seed=2)
    assert a.metrics == b.metrics
    assert a.metrics != c.metrics


def test_non_finite_loss_is_reported_as_diverged(monkeypatch: pytest.MonkeyPatch) -> None:
    depth = MINI.task("depth")
    monkeypatch.setattr(type(depth), "loss", lambda self, p, t: (p - t).abs().mean() * math.nan)
    with pytest.raises(Diverged, match="not finite in epoch 0"):
        train(spec("hard-sharing", "equal"), seed=0)
    outcome = execute(json.dumps(spec("hard-sharing", "equal")), 0, cpus=1, gpus=0)
    assert outcome.state == JobState.DIVERGED


def test_a_raising_job_is_reported_as_failed_with_its_error() -> None:
    bad = spec("hard-sharing", "equal")
    bad["optimizer"]["lr"] = 5.0  # over the protocol's maximum: the worker re-checks
    outcome = execute(json.dumps(bad), 0, cpus=1, gpus=0)
    assert outcome.state == JobState.FAILED
    assert "exceeds the protocol's maximum" in str(outcome.error)


def test_the_spec_reaches_a_worker_as_json_text_only() -> None:
    # Ray pickles task arguments: a submitter's data travels as a str, never as objects.
    for payload in (spec("hard-sharing", "equal"), b"{}", None):
        outcome = execute(payload, 0, cpus=1, gpus=0)  # type: ignore[arg-type]
        assert outcome.state == JobState.FAILED
        assert "a job's spec travels as a JSON string" in str(outcome.error)
    outcome = execute("[1, 2]", 0, cpus=1, gpus=0)
    assert outcome.state == JobState.FAILED and "a job's spec is a JSON object" in str(
        outcome.error
    )
    outcome = execute(json.dumps(spec("hard-sharing", "equal")), True, cpus=1, gpus=0)
    assert outcome.state == JobState.FAILED and "seed must be an int" in str(outcome.error)


def test_the_worker_rechecks_the_model_size_before_building_it() -> None:
    # A stored spec tampered with behind the validator: wider heads than the protocol allows.
    wide = spec("hard-sharing", "equal")
    wide["architecture"]["head_width"] = 256
    assert parameter_count(wide["architecture"], MINI) > PROTOCOL.max_parameters
    outcome = execute(json.dumps(wide), 0, cpus=1, gpus=0)
    assert outcome.state == JobState.FAILED
    assert (
        "ValueError: architecture: the model has 2,022,330 parameters;"
        " synthetic-scenes-mini v1 allows at most 1,000,000"
    ) in str(outcome.error)


def test_parameters_are_counted_on_the_meta_device_exactly() -> None:
    for architecture in ARCHITECTURES:
        section = {"name": architecture, "backbone": "small-cnn"}
        real = sum(p.numel() for p in model_from_spec(section, MINI).parameters())
        assert parameter_count(section, MINI) == real > 0
