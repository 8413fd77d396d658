"""Weighting and gradient methods: golden values, properties, and the cheap Jacobian."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from runners.weighting import WEIGHTINGS, StepGraph
from runners.weighting.base import task_jacobian
from runners.weighting.dwa import DWA
from runners.weighting.mgda import MGDA, min_norm_weights
from runners.weighting.pcgrad import PCGrad, pcgrad_weights
from runners.weighting.uncertainty import Uncertainty


def test_pcgrad_golden_two_conflicting_gradients() -> None:
    # g1 = (1, 0), g2 = (-1, 1): g1' = (0.5, 0.5), g2' = (0, 1), update (0.5, 1.5) = 2 g1 + 1.5 g2.
    jacobian = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    weights = pcgrad_weights(jacobian, torch.tensor([0, 1]))
    torch.testing.assert_close(weights, torch.tensor([2.0, 1.5], dtype=torch.float64))
    torch.testing.assert_close(weights @ jacobian, torch.tensor([0.5, 1.5], dtype=torch.float64))


def test_pcgrad_leaves_agreeing_gradients_alone() -> None:
    jacobian = torch.tensor([[1.0, 0.5], [0.5, 1.0], [1.0, 1.0]])
    torch.testing.assert_close(pcgrad_weights(jacobian, torch.tensor([2, 0, 1])), torch.ones(3))


def test_pcgrad_matches_the_papers_loop_on_random_gradients() -> None:
    generator = torch.Generator().manual_seed(0)
    jacobian = torch.randn(4, 7, generator=generator, dtype=torch.float64)
    order = torch.tensor([2, 0, 3, 1])
    expected = torch.zeros(7, dtype=torch.float64)
    for i in range(4):  # the reference loop of Yu et al.'s code
        g = jacobian[i].clone()
        for j in order.tolist():
            if j != i and g @ jacobian[j] < 0:
                g -= (g @ jacobian[j]) / (jacobian[j] @ jacobian[j]) * jacobian[j]
        expected += g
    torch.testing.assert_close(pcgrad_weights(jacobian, order) @ jacobian, expected)


def test_mgda_two_task_closed_form() -> None:
    # g1 = (1, 0), g2 = (0, 2): w1 = <g2 - g1, g2> / |g1 - g2|^2 = 4 / 5.
    jacobian = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(
        min_norm_weights(jacobian @ jacobian.T), torch.tensor([0.8, 0.2], dtype=torch.float64)
    )


def test_mgda_opposite_gradients_cancel() -> None:
    jacobian = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    weights = min_norm_weights(jacobian @ jacobian.T)
    torch.testing.assert_close(weights, torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_mgda_three_orthonormal_gradients_weigh_equally() -> None:
    torch.testing.assert_close(
        min_norm_weights(torch.eye(3, dtype=torch.float64)),
        torch.full((3,), 1 / 3, dtype=torch.float64),
        atol=1e-6,
        rtol=0,
    )


def test_mgda_three_tasks_matches_a_grid_search() -> None:
    generator = torch.Generator().manual_seed(3)
    jacobian = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    gram = jacobian @ jacobian.T
    weights = min_norm_weights(gram, iterations=5000)
    steps = 400
    best = min(
        float(w @ gram @ w)
        for a, b in itertools.product(range(steps + 1), repeat=2)
        if a + b <= steps
        for w in [torch.tensor([a, b, steps - a - b], dtype=torch.float64) / steps]
    )
    assert float(weights @ gram @ weights) <= best + 1e-6
    assert abs(float(weights.sum()) - 1) < 1e-12 and bool((weights >= 0).all())


def test_mgda_direction_conflicts_with_no_task() -> None:
    generator = torch.Generator().manual_seed(1)
    jacobian = torch.randn(3, 10, generator=generator)
    direction = MGDA(3, iterations=5000).aggregate(jacobian) @ jacobian
    # Min-norm point d of the hull: <d, g_t> >= |d|^2 >= 0 for every task.
    assert bool((jacobian @ direction >= direction @ direction - 1e-4).all())


def test_dwa_weights_after_two_epochs() -> None:
    dwa = DWA(2, temperature=2.0)
    assert dwa.weights(torch.ones(2)).tolist() == [1.0, 1.0]
    dwa.end_epoch(torch.tensor([1.0, 2.0]))
    assert dwa.weights(torch.ones(2)).tolist() == [1.0, 1.0]
    dwa.end_epoch(torch.tensor([0.5, 2.0]))  # ratios r = (0.5, 1.0)
    e = torch.exp(torch.tensor([0.25, 0.5]))
    torch.testing.assert_close(dwa.weights(torch.ones(2)), 2 * e / e.sum())


def test_uncertainty_loss_and_gradient() -> None:
    uw = Uncertainty(2, initial_log_variance=0.5)
    losses = torch.tensor([2.0, 3.0], requires_grad=True)
    weights = uw.backward(StepGraph(list(losses), None, [], [[], []]))
    torch.testing.assert_close(weights, torch.exp(torch.tensor([-0.5, -0.5])))
    # d/ds [exp(-s) L + s] = 1 - exp(-s) L
    torch.testing.assert_close(
        uw.log_variance.grad, 1 - torch.exp(torch.tensor(-0.5)) * losses.detach()
    )


def test_repr_shows_hyperparameters() -> None:
    assert repr(DWA(3, temperature=1.5)) == "DWA(temperature=1.5)"
    assert repr(PCGrad(3, seed=4)) == "PCGrad(seed=4)"


class Toy(nn.Module):
    """A shared encoder and two heads, to compare the cheap Jacobian with plain backward passes."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5))
        self.heads = nn.ModuleList([nn.Linear(5, 1), nn.Linear(5, 3)])


def toy_graph(model: Toy, with_representation: bool) -> StepGraph:
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    z = model.encoder(x)
    losses = [(h(z) ** 2).mean() for h in model.heads]
    return StepGraph(
        losses,
        z if with_representation else None,
        list(model.encoder.parameters()),
        [list(h.parameters()) for h in model.heads],
    )


@pytest.mark.parametrize("with_representation", [True, False])
def test_task_jacobian_equals_per_task_backward(with_representation: bool) -> None:
    torch.manual_seed(0)
    model = Toy()
    expected = []
    head_grads = []
    for t in range(2):
        graph = toy_graph(model, True)
        model.zero_grad()
        graph.task_losses[t].backward()
        expected.append(torch.cat([p.grad.reshape(-1) for p in model.encoder.parameters()]))
        head_grads.append([p.grad.clone() for p in model.heads[t].parameters()])
    model.zero_grad(set_to_none=True)
    jacobian = task_jacobian(toy_graph(model, with_representation))
    torch.testing.assert_close(jacobian, torch.stack(expected))
    for head, grads in zip(model.heads, head_grads, strict=True):  # each head: its own task
        for p, g in zip(head.parameters(), grads, strict=True):
            torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_every_method_fills_shared_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = Toy()
    method = WEIGHTINGS.get(name)(2)
    weights = method.backward(toy_graph(model, True))
    assert weights.shape == (2,) and bool(torch.isfinite(weights).all())
    for p in model.parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all())
