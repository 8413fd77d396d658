"""Bilevel methods (Auto-λ, MOML, FORUM): hypergradients against autograd through the
look-ahead, FORUM's subproblem against hand-solved cases, and the loop's meta batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pytest
import torch
from torch import nn

from runners.benchmarks import BENCHMARKS
from runners.splits import validation_split
from runners.step import ModelFunction, TrainingStep
from runners.train import build, meta_part, train
from runners.weighting import WEIGHTINGS, StepGraph
from runners.weighting.auto_lambda import AutoLambda
from runners.weighting.forum import FORUM, forum_weights
from runners.weighting.moml import MOML

MINI = BENCHMARKS.get("synthetic-scenes-mini")
BILEVEL = ("auto-lambda", "moml", "forum")


class Quadratic:
    """Two tasks with L_t(theta; data) = 0.5 |M_t theta - b_t|^2, in float64: a `LookAhead`."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(3)
        self.theta = nn.Parameter(torch.randn(4, dtype=torch.float64, generator=g))
        self.data = {
            which: [
                (
                    torch.randn(3, 4, dtype=torch.float64, generator=g),
                    torch.randn(3, dtype=torch.float64, generator=g),
                )
                for _ in range(2)
            ]
            for which in ("train", "meta")
        }
        self.parameters = [self.theta]
        self.learning_rate = 0.05

    def losses(
        self, values: Sequence[torch.Tensor], batch: Literal["train", "meta"]
    ) -> torch.Tensor:
        (theta,) = values
        return torch.stack([0.5 * (m @ theta - b).pow(2).sum() for m, b in self.data[batch]])

    def graph(self) -> StepGraph:
        losses = self.losses([self.theta], "train")
        return StepGraph([losses[0], losses[1]], None, [self.theta], [[], []], look_ahead=self)


def look_ahead_hypergradients(
    problem: Quadratic, weights_of: Any, meta: torch.Tensor, lr: float
) -> torch.Tensor:
    """(T, T) row t: d L_t(theta'; meta) / d meta, through theta' = theta - lr grad f (autograd)."""
    meta = meta.detach().clone().requires_grad_(True)
    train = problem.losses([problem.theta], "train")
    grad = torch.autograd.grad((weights_of(meta) * train).sum(), problem.theta, create_graph=True)
    ahead = problem.theta - lr * grad[0]
    upper = problem.losses([ahead], "meta")
    return torch.stack(
        [torch.autograd.grad(upper[t], meta, retain_graph=True)[0] for t in range(2)]
    )


def test_auto_lambda_finite_differences_match_the_exact_hypergradient() -> None:
    """Central differences are exact on quadratic losses: equal to autograd's second order."""
    problem = Quadratic()
    method = AutoLambda(2)
    exact = look_ahead_hypergradients(
        problem, lambda lam: lam, method._meta.double(), problem.learning_rate
    ).sum(0)
    got = method.hypergradient(problem.graph(), problem)
    torch.testing.assert_close(got.double(), exact, rtol=1e-5, atol=1e-7)
    assert bool((exact != 0).all())


def test_auto_lambda_steps_lambda_by_adam_then_trains_on_the_new_weights() -> None:
    problem = Quadratic()
    method = AutoLambda(2, initial=0.1, outer_lr=1e-4)
    exact = look_ahead_hypergradients(
        problem, lambda lam: lam, method._meta.double(), problem.learning_rate
    ).sum(0)
    weights = method.backward(problem.graph())
    # Adam's first step moves each coordinate by lr against the sign of its gradient
    # (lambda is float32: 1e-7 is its rounding at 0.1, a wrong sign would be 2e-4 off).
    expected = 0.1 - 1e-4 * torch.sign(exact)
    torch.testing.assert_close(weights.double(), expected, rtol=0, atol=1e-7)
    want = torch.autograd.grad(
        (expected * problem.losses([problem.theta], "train")).sum(), problem.theta
    )[0]
    torch.testing.assert_close(problem.theta.grad, want)


def test_moml_combines_the_tasks_exact_hypergradients_by_min_norm() -> None:
    """Row t of MOML's matrix is d L_t(meta)/d alpha through the softmax-weighted look-ahead;
    with two tasks the min-norm point of the unit rows has MGDA's closed form."""
    problem = Quadratic()
    method = MOML(2, inner_lr=0.3)
    rows = look_ahead_hypergradients(
        problem, lambda a: torch.softmax(a, 0), method._meta.double(), 0.3
    )
    u1, u2 = rows[0] / rows[0].norm(), rows[1] / rows[1].norm()
    gamma = float(((u2 - u1) @ u2 / (u1 - u2).pow(2).sum()).clamp(0, 1))
    expected = gamma * u1 + (1 - gamma) * u2
    got = method.hypergradient(problem.graph(), problem)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-7)
    # The combination lowers both tasks' meta losses to first order.
    assert bool((rows @ expected > 0).all())


@pytest.mark.parametrize(
    ("pi", "scale", "expected"),
    [
        # G = I: min |w|^2 - c w_3 on the simplex, w_3 free above 0: (1/2, 1/2, c/2).
        ((0.0, 0.0), 0.4, (0.5, 0.5, 0.2)),
        # The constraint w_3 >= pi . w binds: w_3 = 1, the rest as before.
        ((1.0, 1.0), 0.4, (0.5, 0.5, 1.0)),
        # w_3 >= 2 w_1 binds (free, w_3 would be 0.2 and w_1 at most 0.1): on w_3 = 2 w_1
        # the objective is 6 w1^2 - 2.8 w1 + 1, least at w_1 = 7/30.
        ((2.0, 0.0), 0.4, (7 / 30, 23 / 30, 14 / 30)),
    ],
)
def test_forum_subproblem_matches_hand_solutions(
    pi: tuple[float, float], scale: float, expected: tuple[float, float, float]
) -> None:
    got = forum_weights(np.eye(3), np.array(pi), scale)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_forum_subproblem_beats_every_feasible_point_of_a_random_sample() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 6))
    gram, pi, scale = a @ a.T, rng.normal(size=3), 0.7
    w = forum_weights(gram, pi, scale)
    assert abs(w[:3].sum() - 1) < 1e-9 and (w >= 0).all() and w[3] >= w[:3] @ pi - 1e-7
    objective = w @ gram @ w - scale * w[3]
    simplex = rng.dirichlet(np.ones(3), size=2000)
    tops = np.maximum(simplex @ pi, 0) + rng.exponential(0.5, size=2000)
    for point in np.column_stack([simplex, tops]):
        assert objective <= point @ gram @ point - scale * point[3] + 1e-8


def test_forum_steps_model_and_logits_and_averages_its_weights() -> None:
    problem = Quadratic()
    method = FORUM(2, inner_steps=3, inner_lr=0.05)
    before = method._meta.clone()
    weights = method.backward(problem.graph())
    assert weights.shape == (2,) and bool(torch.isfinite(weights).all())
    # Epoch 0: the running average takes the subproblem's solution whole (rate 1).
    assert abs(float(method._lambda.sum()) - 1.0) < 1e-6 and bool((method._lambda >= 0).all())
    assert problem.theta.grad is not None and bool(problem.theta.grad.abs().sum() > 0)
    assert not torch.equal(method._meta, before)
    method.end_epoch(torch.ones(2))
    assert method._epoch == 1


def test_the_look_ahead_leaves_the_model_and_its_statistics_as_they_were() -> None:
    torch.manual_seed(0)
    spec = mini_spec("auto-lambda")
    model, weighting, optimizer, _ = build(spec, MINI, MINI.protocol(1))
    step = TrainingStep(model, weighting, optimizer, MINI.tasks, "cpu")
    data = MINI.load("train", MINI.protocol(1))
    batch = {k: v[:4] for k, v in data.items()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    function = ModelFunction(step, batch, {k: v[4:8] for k, v in data.items()})
    shifted = [p.detach() + 0.01 for p in function.parameters]
    function.losses(shifted, "meta")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # At the model's own values: the ordinary forward's losses (which do update statistics).
    at_own = function.losses(function.parameters, "train")
    torch.testing.assert_close(
        at_own, torch.stack(step.task_losses(model(batch["image"])[1], batch))
    )


def mini_spec(weighting: str, **params: Any) -> dict[str, Any]:
    return {
        "benchmark": MINI.name,
        "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": weighting, **params},
        "optimizer": {"name": "adam", "lr": 1e-3},
    }


def test_meta_batches_come_from_the_validation_part_which_the_model_never_trains_on() -> None:
    n = 20
    data = {"image": torch.arange(n, dtype=torch.float32)[:, None, None, None].repeat(1, 3, 2, 2)}
    protocol = MINI.protocol(1)
    fit, meta = meta_part(data, AutoLambda(3), MINI, protocol)
    assert meta is not None
    fit_index, validation_index = validation_split(
        n, protocol.validation_fraction, MINI.name, protocol.version
    )
    assert fit["image"][:, 0, 0, 0].tolist() == fit_index.tolist()
    assert meta["image"][:, 0, 0, 0].tolist() == validation_index.tolist()
    assert len(validation_index) == 4 and not set(fit_index) & set(validation_index)
    same, again = meta_part(data, AutoLambda(3, meta_split="train"), MINI, protocol)
    assert same is data and again is data
    assert meta_part(data, WEIGHTINGS.get("equal")(3), MINI, protocol) == (data, None)


def test_a_bilevel_method_refuses_data_parallel_training() -> None:
    with pytest.raises(ValueError, match="moml learns its task weights from each worker's meta"):
        train(mini_spec("moml"), 0, parallel=object())  # type: ignore[arg-type]
