"""Every registered weighting method: the contract, the promised properties, two real steps.

The tests are parametrised over the registry, so a new method is covered the
moment it registers.  Gradient methods are held to the properties they
declare (`GradientMethod.properties`, documented in `PROPERTIES`) on random
Jacobians drawn by Hypothesis.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pydantic
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from runners.benchmarks import BENCHMARKS
from runners.step import TrainingStep
from runners.train import build
from runners.weighting import PROPERTIES, WEIGHTINGS, GradientMethod, StepGraph, Weighting
from submissions.submit import check_file

EXAMPLES = Path(__file__).resolve().parents[2] / "submissions" / "examples"
NAMES = WEIGHTINGS.names()
GRADIENT_METHODS = [n for n in NAMES if issubclass(WEIGHTINGS.get(n), GradientMethod)]


def make(name: str, num_tasks: int, **params: Any) -> Weighting:
    checked = dict(WEIGHTINGS.parameters(name).model_validate(params))
    return WEIGHTINGS.get(name)(num_tasks, **checked)


class Toy(nn.Module):
    """A shared encoder and one head per task."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5))
        self.heads = nn.ModuleList([nn.Linear(5, t + 1) for t in range(num_tasks)])

    def graph(self, with_representation: bool = True, seed: int = 0) -> StepGraph:
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(seed))
        z = self.encoder(x)
        # Positive losses of different scales, as real task losses are.
        losses = [(t + 1) * ((h(z) - 1) ** 2).mean() for t, h in enumerate(self.heads)]
        return StepGraph(
            losses,
            z if with_representation else None,
            list(self.encoder.parameters()),
            [list(h.parameters()) for h in self.heads],
        )


# --- the contract -------------------------------------------------------------------------


@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_backward_fills_finite_gradients_and_returns_weights(name: str, num_tasks: int) -> None:
    torch.manual_seed(0)
    model = Toy(num_tasks)
    method = make(name, num_tasks)
    for step in range(2):  # stateful methods take their second step differently
        model.zero_grad(set_to_none=True)
        weights = method.backward(model.graph(seed=step))
        assert weights.shape == (num_tasks,) and bool(torch.isfinite(weights).all())
        assert not weights.requires_grad
        for p in model.parameters():
            assert p.grad is not None and bool(torch.isfinite(p.grad).all())
        # Learnt weights receive a gradient too (they are trained by the run's optimiser).
        for p in method.parameters():
            assert p.grad is not None and bool(torch.isfinite(p.grad).all())


@pytest.mark.parametrize("name", NAMES)
def test_without_a_shared_representation(name: str) -> None:
    torch.manual_seed(0)
    model = Toy(3)
    method = make(name, 3)
    if WEIGHTINGS.get(name).needs_representation:
        with pytest.raises(ValueError, match="shared representation"):
            method.backward(model.graph(with_representation=False))
        return
    weights = method.backward(model.graph(with_representation=False))
    assert weights.shape == (3,) and bool(torch.isfinite(weights).all())
    assert all(p.grad is not None for p in model.encoder.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_repr_shows_the_hyperparameters(name: str) -> None:
    defaults = WEIGHTINGS.parameters(name)().model_dump()
    method = make(name, 3)
    shown = ", ".join(f"{k}={v!r}" for k, v in defaults.items())
    assert repr(method) == f"{type(method).__name__}({shown})"


@pytest.mark.parametrize("name", NAMES)
def test_end_epoch_is_accepted_between_steps(name: str) -> None:
    torch.manual_seed(0)
    model = Toy(3)
    method = make(name, 3)
    for epoch in range(3):
        model.zero_grad(set_to_none=True)
        graph = model.graph(seed=epoch)
        method.backward(graph)
        method.end_epoch(graph.losses.detach() * (1 - 0.1 * epoch))
    model.zero_grad(set_to_none=True)
    assert bool(torch.isfinite(method.backward(model.graph(seed=9))).all())


def out_of_range(schema: dict[str, Any]) -> list[Any]:
    """Values that a field with this JSON schema must reject."""
    if "anyOf" in schema:  # Optional[...]: the non-null member
        schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
    bad: list[Any] = ["a string"] if schema.get("type") in ("number", "integer") else []
    if "enum" in schema:
        bad.append("not-a-choice")
    for key, shift in (("minimum", -1), ("exclusiveMinimum", 0)):
        if key in schema:
            bad.append(schema[key] + shift if shift else schema[key])
            if shift:
                bad.append(schema[key] - 1e-6 if schema.get("type") == "number" else None)
    for key, shift in (("maximum", 1), ("exclusiveMaximum", 0)):
        if key in schema:
            bad.append(schema[key] + shift if shift else schema[key])
    if schema.get("type") == "number":
        bad.extend([math.nan, math.inf])
    if schema.get("type") == "array":
        bad.append([])  # min_length
        bad.extend([[v] for v in out_of_range(schema["items"]) if v is not None])
    return [v for v in bad if v is not None]


@pytest.mark.parametrize("name", NAMES)
def test_parameters_model_rejects_unknown_keys_and_out_of_range_values(name: str) -> None:
    model = WEIGHTINGS.parameters(name)
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({"not_a_parameter": 1})
    properties = model.model_json_schema().get("properties", {})
    for field, schema in properties.items():
        values = out_of_range(schema)
        assert values, f"{name}.{field} declares no bounds"
        for value in values:
            with pytest.raises(pydantic.ValidationError):
                model.model_validate({field: value})


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_declare_known_properties(name: str) -> None:
    declared = WEIGHTINGS.get(name).properties
    assert declared <= set(PROPERTIES), declared - set(PROPERTIES)
    assert not {"homogeneous", "scale_invariant"} <= declared


# --- properties on random Jacobians -------------------------------------------------------

# Solver tolerances: quadprog (UPGrad, with its 1e-4 regularisation), SLSQP (CAGrad) and
# Frank-Wolfe (MGDA) are not exact; relative to the size of the update.
RTOL = 2e-3


def random_jacobian(seed: int, num_tasks: int, dimension: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # Rows of different norms, as real task gradients have.
    norms = torch.exp(torch.randn(num_tasks, 1, generator=generator, dtype=torch.float64))
    return norms * torch.randn(num_tasks, dimension, generator=generator, dtype=torch.float64)


def run(name: str, jacobian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A fresh instance's update and weights (stateful methods start from their initial state)."""
    method = make(name, jacobian.shape[0])
    assert isinstance(method, GradientMethod)
    return method.update(jacobian)


def assert_close_vectors(actual: torch.Tensor, expected: torch.Tensor, size: float) -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=RTOL * size)


def declaring(prop: str) -> list[str]:
    return [n for n in GRADIENT_METHODS if prop in WEIGHTINGS.get(n).properties]


JACOBIANS = {
    "seed": st.integers(0, 10_000),
    "num_tasks": st.integers(2, 4),
}


@pytest.mark.parametrize("name", declaring("permutation_invariant"))
@settings(max_examples=15, deadline=None)
@given(**JACOBIANS, permutation_seed=st.integers(0, 100))
def test_permutation_invariance(
    name: str, seed: int, num_tasks: int, permutation_seed: int
) -> None:
    jacobian = random_jacobian(seed, num_tasks)
    permutation = torch.randperm(
        num_tasks, generator=torch.Generator().manual_seed(permutation_seed)
    )
    direction, weights = run(name, jacobian)
    permuted_direction, permuted_weights = run(name, jacobian[permutation])
    size = float(direction.norm())
    assert_close_vectors(permuted_direction, direction, size)
    assert_close_vectors(permuted_weights, weights[permutation], float(weights.abs().max()))


@pytest.mark.parametrize("name", declaring("homogeneous"))
@settings(max_examples=15, deadline=None)
@given(**JACOBIANS, scale=st.floats(0.1, 10.0))
def test_homogeneity(name: str, seed: int, num_tasks: int, scale: float) -> None:
    jacobian = random_jacobian(seed, num_tasks)
    direction, _ = run(name, jacobian)
    scaled, _ = run(name, scale * jacobian)
    assert_close_vectors(scaled, scale * direction, scale * float(direction.norm()))


@pytest.mark.parametrize("name", declaring("scale_invariant"))
@settings(max_examples=15, deadline=None)
@given(**JACOBIANS, scale=st.floats(0.1, 10.0))
def test_scale_invariance(name: str, seed: int, num_tasks: int, scale: float) -> None:
    jacobian = random_jacobian(seed, num_tasks)
    direction, _ = run(name, jacobian)
    scaled, _ = run(name, scale * jacobian)
    assert_close_vectors(scaled, direction, float(direction.norm()))


@pytest.mark.parametrize("name", declaring("non_conflicting"))
@settings(max_examples=25, deadline=None)
@given(**JACOBIANS, conflict=st.floats(0.0, 3.0))
def test_no_conflict_with_any_task(name: str, seed: int, num_tasks: int, conflict: float) -> None:
    jacobian = random_jacobian(seed, num_tasks)
    # Push the last task against the others: strongly conflicting gradients.
    jacobian[-1] -= conflict * jacobian[:-1].sum(dim=0)
    direction, _ = run(name, jacobian)
    inner = jacobian @ direction
    tolerance = RTOL * float(direction.norm()) * jacobian.norm(dim=1)
    assert bool((inner >= -tolerance).all()), inner


def test_every_property_is_promised_somewhere() -> None:
    promised = set().union(*(WEIGHTINGS.get(n).properties for n in GRADIENT_METHODS))
    assert promised == set(PROPERTIES)


# --- two real training steps on the default model -----------------------------------------

MINI = BENCHMARKS.get("synthetic-scenes-mini")


@pytest.fixture(scope="module")
def mini_batch() -> dict[str, torch.Tensor]:
    data = MINI.load("train", MINI.protocol(1))
    return {k: v[:4] for k, v in data.items()}


@pytest.mark.parametrize("name", NAMES)
def test_two_training_steps_on_the_default_model(
    name: str, mini_batch: dict[str, torch.Tensor]
) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    params: dict[str, Any] = {}
    if name == "fixed":
        params = {"task_weights": [1.0, 2.0, 0.5]}
    spec = {
        "benchmark": MINI.name,
        "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": name, **params},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }
    protocol = MINI.protocol(1)
    model, weighting, optimizer, _ = build(spec, MINI, protocol)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.train()
    tasks = MINI.tasks
    shared = model.shared_parameters()
    own = [model.task_parameters(t.name) for t in tasks]
    before = [p.detach().clone() for p in model.parameters()]
    # The training loop's own step: the model's training loss, the method's backward.
    step = TrainingStep(model, weighting, optimizer, tasks, "cpu")
    for _ in range(2):
        losses, weights = step(mini_batch)
        assert bool(torch.isfinite(losses).all())
        assert weights.shape == (len(tasks),) and bool(torch.isfinite(weights).all())
        # The step leaves the gradients it applied in place.
        for p in [*shared, *(q for group in own for q in group)]:
            assert p.grad is not None and bool(torch.isfinite(p.grad).all())
    weighting.end_epoch(losses)
    changed = [not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True)]
    assert all(changed[: len(shared)]) or sum(changed) > len(changed) // 2
    # Every task's own parameters moved.
    moved = {id(p) for p, c in zip(model.parameters(), changed, strict=True) if c}
    assert all(any(id(p) in moved for p in group) for group in own)


# --- example specs ------------------------------------------------------------------------


def test_every_registered_weighting_has_an_example_spec() -> None:
    used = {
        yaml.safe_load(path.read_text())["weighting"]["name"] for path in EXAMPLES.glob("*.yaml")
    }
    assert set(NAMES) <= used, sorted(set(NAMES) - used)


@pytest.mark.parametrize("name", NAMES)
def test_the_example_of_each_method_is_valid_with_the_paper_defaults(name: str) -> None:
    path = EXAMPLES / f"hps-{name}.yaml"
    checked = check_file(path)
    assert checked.problems == []
    written = {k: v for k, v in yaml.safe_load(path.read_text())["weighting"].items()}
    written.pop("name")
    defaults = WEIGHTINGS.parameters(name)().model_dump()
    if name == "fixed":  # no paper default: the example sets weights
        assert len(written.pop("task_weights")) == len(MINI.tasks)
    # Parameters written out are the defaults (older examples leave them implicit).
    assert written == {k: defaults[k] for k in written}
