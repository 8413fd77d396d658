"""Method zoo II: golden values and checks of scale-invariant, STCH, IMTL (full), FairGrad,
ExcessMTL and MoCo.

Each case states where its answer comes from: worked by hand (1e-9 to 1e-6,
float64), or an independent reference computation (torchjd's
implementation, or the authors' update written out as a loop) named in
the test.  The registry-wide contract and property tests cover these
methods too (test_weighting_properties.py).
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torchjd import scalarization
from torchjd.aggregation import FairGradWeighting, MoDoWeighting, SDMGradWeighting

from runners.benchmarks import BENCHMARKS
from runners.benchmarks.synthetic_scenes import SyntheticScenes
from runners.train import extra_indices, train
from runners.weighting import WEIGHTINGS, GradientMethod, StepGraph, Weighting
from runners.weighting.base import task_jacobian
from runners.weighting.double_sampling import DoubleSampling
from runners.weighting.excess_mtl import ExcessMTL
from runners.weighting.fairgrad import FairGrad, fairgrad_weights
from runners.weighting.imtl import IMTLG
from runners.weighting.imtl_full import IMTLFull
from runners.weighting.moco import MoCo, project_onto_simplex
from runners.weighting.modo import MoDo
from runners.weighting.scale_invariant import ScaleInvariant
from runners.weighting.sdmgrad import SDMGrad
from runners.weighting.stch import STCH
from tests.runners.test_checkpoint import interrupted_then_resumed
from tests.runners.test_train import TINY


def matrix(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def vector(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def grad(p: torch.Tensor) -> torch.Tensor:
    assert p.grad is not None
    return p.grad


class Tiny(nn.Module):
    """z = W x with W shared, two linear heads: small enough to check by hand."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(3, 2, bias=False)
        self.heads = nn.ModuleList([nn.Linear(2, 1), nn.Linear(2, 1)])

    def graph(self, scales: tuple[float, float] = (1.0, 1.0), seed: int = 0) -> StepGraph:
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed))
        z = self.encoder(x)
        losses = [
            s * (((h(z) - 1.0) ** 2).mean() + 0.5) for s, h in zip(scales, self.heads, strict=True)
        ]
        return StepGraph(
            losses,
            z,
            list(self.encoder.parameters()),
            [list(h.parameters()) for h in self.heads],
        )


# --- scale-invariant ----------------------------------------------------------------------


def test_scale_invariant_weights_are_inverse_losses() -> None:
    losses = torch.tensor([1.0, 4.0], requires_grad=True)
    weights = ScaleInvariant(2).backward(StepGraph(list(losses), None, [], [[], []]))
    # d/dL_t sum log L = 1 / L_t = (1, 1/4).
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.25]))
    torch.testing.assert_close(losses.grad, torch.tensor([1.0, 0.25]))


def test_scale_invariant_gradients_ignore_the_scale_of_each_loss() -> None:
    grads = []
    for scales in ((1.0, 1.0), (7.0, 0.01)):
        model = Tiny()
        ScaleInvariant(2).backward(model.graph(scales))
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# --- STCH ---------------------------------------------------------------------------------


def test_stch_paper_weights_are_the_gradient_of_the_smooth_max() -> None:
    # lambda = (1/2, 1/2), mu = 1, L = (1, 3): w = 1/2 softmax(L / 2) = (1, e) / (2 (1 + e)).
    e = math.e
    weights = STCH(2).weights(torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(weights, torch.tensor([1 / (2 * (1 + e)), e / (2 * (1 + e))]))
    # Independent reference: autograd through torchjd's scalariser of the paper's formula.
    for mu in (0.1, 1.0, 5.0):
        losses = torch.tensor([0.3, 2.0, 1.1], dtype=torch.float64, requires_grad=True)
        scalarization.STCH(mu)(losses).backward()
        torch.testing.assert_close(STCH(3, mu=mu).weights(losses), losses.grad)


def test_stch_tends_to_the_largest_loss_as_mu_shrinks() -> None:
    weights = STCH(3, mu=1e-3).weights(torch.tensor([1.0, 3.0, 2.0]))
    torch.testing.assert_close(weights, torch.tensor([0.0, 1 / 3, 0.0]))


def test_stch_authors_variant_warms_up_then_uses_the_nadir() -> None:
    method = STCH(2, variant="authors-mtl", warmup_epochs=1)
    losses = torch.tensor([1.0, 4.0])
    for epoch_means in ([3.0, 5.0], [2.0, 4.0]):  # epochs 0 and 1: the sum of log-losses
        torch.testing.assert_close(method.weights(losses), 1 / losses)
        method.end_epoch(torch.tensor(epoch_means))
    # Nadir = epoch 1's means (2, 4).  log(L / n) = (log 1/2, 0): softmax = (1/3, 2/3);
    # w = T softmax / L = (2/3, 1/3).
    torch.testing.assert_close(method.weights(losses), torch.tensor([2 / 3, 1 / 3]))
    method.end_epoch(torch.tensor([0.5, 0.5]))  # the nadir stays
    # Reference: autograd of the authors' objective T mu log sum exp(log(L / n) / mu).
    leaf = torch.tensor([0.7, 2.5], requires_grad=True)
    (2 * torch.logsumexp(torch.log(leaf / torch.tensor([2.0, 4.0])), dim=0)).backward()
    torch.testing.assert_close(method.weights(leaf), leaf.grad)


# --- IMTL (full) --------------------------------------------------------------------------


def test_imtl_full_with_zero_scales_is_imtl_g() -> None:
    jacobian = matrix([[1.0, 0.0], [0.0, 2.0]])
    direction, weights = IMTLFull(2).update(jacobian)
    # d = (2/3, 2/3) projects equally on e1 and e2 (as `imtl`).
    torch.testing.assert_close(weights, vector([2 / 3, 1 / 3]), atol=1e-9, rtol=0)
    torch.testing.assert_close(direction, vector([2 / 3, 2 / 3]), atol=1e-9, rtol=0)
    generator = torch.Generator().manual_seed(1)
    jacobian = torch.randn(3, 7, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(IMTLFull(3).aggregate(jacobian), IMTLG(3).aggregate(jacobian))


def test_imtl_full_scales_losses_and_learns_the_scales() -> None:
    model = Tiny()
    method = IMTLFull(2)
    with torch.no_grad():
        method.loss_scale.copy_(torch.tensor([math.log(2.0), 0.0]))
    graph = model.graph()
    losses = graph.losses.detach()
    raw = task_jacobian(model.graph())  # also accumulates the plain head gradients
    plain_heads = [[grad(p).clone() for p in h.parameters()] for h in model.heads]
    model.zero_grad(set_to_none=True)
    weights = method.backward(graph)
    # The scaled losses' Jacobian is diag(e^s) J = diag(2, 1) J.
    scaled = raw * torch.tensor([[2.0], [1.0]])
    alpha = IMTLG(2).aggregate(scaled)
    torch.testing.assert_close(grad(model.encoder.weight).reshape(-1), alpha @ scaled)
    torch.testing.assert_close(weights, alpha * torch.tensor([2.0, 1.0]))
    # s's gradient: e^s L - 1; heads: e^{s_t} grad L_t.
    torch.testing.assert_close(method.loss_scale.grad, torch.tensor([2.0, 1.0]) * losses - 1)
    for factor, head, plain in zip((2.0, 1.0), model.heads, plain_heads, strict=True):
        for p, g in zip(head.parameters(), plain, strict=True):
            torch.testing.assert_close(p.grad, factor * g)


# --- FairGrad -----------------------------------------------------------------------------

# Orthogonal rows of norms n_t: n_t^2 w_t = w_t^(-1/alpha), so w_t = n_t^(-2 alpha / (alpha + 1)).
FAIRGRAD_GOLDEN = [
    (1.0, [1.0, 2.0], [1.0, 0.5]),
    (1.0, [1.0, 2.0, 4.0], [1.0, 0.5, 0.25]),
    (2.0, [1.0, 2.0], [1.0, 2 ** (-4 / 3)]),
    (0.5, [1.0, 2.0], [1.0, 2 ** (-2 / 3)]),
]


@pytest.mark.parametrize(("alpha", "norms", "expected"), FAIRGRAD_GOLDEN)
def test_fairgrad_orthogonal_closed_form(
    alpha: float, norms: list[float], expected: list[float]
) -> None:
    jacobian = torch.diag(vector(norms))
    direction, weights = FairGrad(len(norms), alpha=alpha).update(jacobian)
    torch.testing.assert_close(weights, vector(expected), atol=1e-9, rtol=0)
    torch.testing.assert_close(direction, weights @ jacobian)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_fairgrad_solves_its_system_and_agrees_with_torchjd(alpha: float) -> None:
    generator = torch.Generator().manual_seed(int(alpha * 10))
    jacobian = torch.randn(3, 9, generator=generator, dtype=torch.float64)
    jacobian[2] -= 1.5 * jacobian[:2].sum(dim=0)  # a conflicting task
    gram = jacobian @ jacobian.T
    weights = fairgrad_weights(gram, alpha)
    assert bool((weights > 0).all())
    # g_t . d = w_t^(-1/alpha): every task improves.
    torch.testing.assert_close(gram @ weights, weights ** (-1 / alpha), atol=1e-9, rtol=1e-9)
    # Independent reference: torchjd's FairGradWeighting (scipy's default tolerances, 1e-8).
    torch.testing.assert_close(weights, FairGradWeighting(alpha)(gram), atol=1e-5, rtol=1e-5)


def test_fairgrad_with_alpha_one_ignores_the_scale_of_the_gradients() -> None:
    generator = torch.Generator().manual_seed(3)
    jacobian = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    method = FairGrad(3)
    direction, _ = method.update(jacobian)
    # G -> c^2 G gives w -> w / c, so d = w @ J is unchanged.
    torch.testing.assert_close(method.update(10.0 * jacobian)[0], direction)


# --- ExcessMTL ----------------------------------------------------------------------------


def excess_reference(jacobians: list[torch.Tensor], step_size: float) -> list[torch.Tensor]:
    """The authors' update as LibMTL writes it: a loop over tasks, multiplicative weights."""
    num_tasks = jacobians[0].shape[0]
    loss_weight = torch.ones(num_tasks, dtype=torch.float64)
    grad_sum = torch.zeros_like(jacobians[0])
    initial = None
    out = []
    for grads in jacobians:
        w = torch.zeros(num_tasks, dtype=torch.float64)
        for i in range(num_tasks):
            grad_sum[i] += grads[i] ** 2
            h = torch.sqrt(grad_sum[i] + 1e-7)
            w[i] = grads[i] * (1 / h) @ grads[i]
        if initial is None:
            initial = w
        else:
            loss_weight = loss_weight * torch.exp(w / initial * step_size)
            loss_weight = loss_weight / loss_weight.sum() * num_tasks
        out.append(loss_weight.clone())
    return out


def test_excess_mtl_by_hand_and_against_the_authors_loop() -> None:
    first = matrix([[3.0, 4.0], [0.0, 1.0]])
    second = matrix([[3.0, 4.0], [0.0, 2.0]])
    method = ExcessMTL(2, robust_step_size=0.5)
    direction, weights = method.update(first)
    torch.testing.assert_close(weights, vector([1.0, 1.0]))  # step 1: the baseline only
    torch.testing.assert_close(direction, vector([3.0, 5.0]))
    # Step 2 (dropping the 1e-7): S = (9, 16 | 0, 5); e_1 = 9/sqrt(18) + 16/sqrt(32) = 7/sqrt(2)
    # against 7 at step 1; e_2 = 4/sqrt(5) against 1.  w = 2 softmax(0.5 * relative excess).
    relative = vector([1 / math.sqrt(2), 4 / math.sqrt(5)])
    expected = 2 * torch.softmax(0.5 * relative, dim=0)
    _, weights = method.update(second)
    torch.testing.assert_close(weights, expected, atol=1e-6, rtol=0)
    generator = torch.Generator().manual_seed(0)
    jacobians = [torch.randn(3, 6, generator=generator, dtype=torch.float64) for _ in range(5)]
    method = ExcessMTL(3, robust_step_size=0.3)
    for jacobian, reference in zip(jacobians, excess_reference(jacobians, 0.3), strict=True):
        torch.testing.assert_close(method.aggregate(jacobian), reference, atol=1e-12, rtol=1e-12)


def test_excess_mtl_raises_the_weight_of_the_task_far_from_its_optimum() -> None:
    method = ExcessMTL(2, robust_step_size=1.0)
    method.update(matrix([[1.0, 0.0], [0.0, 1.0]]))
    # Task 1's gradient stays large, task 2's shrinks: task 1's excess risk is relatively higher.
    for _ in range(5):
        _, weights = method.update(matrix([[1.0, 0.0], [0.0, 0.1]]))
    assert float(weights[0]) > 1.0 > float(weights[1])
    torch.testing.assert_close(weights.sum(), torch.tensor(2.0, dtype=torch.float64))


# --- MoCo ---------------------------------------------------------------------------------


def test_moco_first_step_by_hand() -> None:
    jacobian = matrix([[1.0, 0.0], [0.0, 2.0]])
    direction, weights = MoCo(2).update(jacobian)
    # y = 0.5 J; Y Y^T = diag(1/4, 1); lambda - 0.1 diag(1/4, 1) lambda = (0.4875, 0.45);
    # onto the simplex: + 0.03125 each = (0.51875, 0.48125); d = lambda @ Y.
    torch.testing.assert_close(weights, vector([0.51875, 0.48125]), atol=1e-12, rtol=0)
    torch.testing.assert_close(direction, vector([0.259375, 0.48125]), atol=1e-12, rtol=0)
    _, weights = MoCo(2, projection="softmax").update(jacobian)
    torch.testing.assert_close(weights, torch.softmax(vector([0.4875, 0.45]), dim=0))


def moco_reference(jacobians: list[torch.Tensor], rho: float) -> list[torch.Tensor]:
    """LibMTL's `MoCo.backward` on already-rescaled gradients, softmax and all, as a loop."""
    num_tasks = jacobians[0].shape[0]
    y = torch.zeros_like(jacobians[0])
    lambd = torch.ones(num_tasks, dtype=torch.float64) / num_tasks
    out = []
    for step, grads in enumerate(jacobians, start=1):
        y = y - (0.5 / step**0.5) * (y - grads)
        eye = torch.eye(num_tasks, dtype=torch.float64)
        lambd = torch.softmax(lambd - (0.1 / step**0.5) * (y @ y.t() + rho * eye) @ lambd, -1)
        out.append(y.t() @ lambd)
    return out


def test_moco_softmax_variant_matches_libmtls_loop() -> None:
    generator = torch.Generator().manual_seed(2)
    jacobians = [torch.randn(3, 5, generator=generator, dtype=torch.float64) for _ in range(4)]
    method = MoCo(3, projection="softmax", rho=0.2)
    for jacobian, reference in zip(jacobians, moco_reference(jacobians, 0.2), strict=True):
        torch.testing.assert_close(method.update(jacobian)[0], reference)


def test_moco_rescales_each_task_gradient_to_its_loss() -> None:
    model = Tiny()
    graph = model.graph()
    raw = task_jacobian(model.graph())
    rescaled = MoCo(2).jacobian(graph)
    torch.testing.assert_close(rescaled.norm(dim=1), graph.losses.detach(), rtol=1e-5, atol=0)
    cosine = torch.nn.functional.cosine_similarity(rescaled, raw, dim=1)
    torch.testing.assert_close(cosine, torch.ones(2))


def bisection_projection(v: torch.Tensor) -> torch.Tensor:
    """Reference: the threshold tau with sum max(v - tau, 0) = 1, found by bisection."""
    low, high = float(v.min()) - 1.0, float(v.max())
    for _ in range(200):
        tau = (low + high) / 2
        if float(torch.clamp(v - tau, min=0).sum()) > 1:
            low = tau
        else:
            high = tau
    return torch.clamp(v - (low + high) / 2, min=0)


def test_simplex_projection() -> None:
    generator = torch.Generator().manual_seed(4)
    for _ in range(20):
        v = 3 * torch.randn(5, generator=generator, dtype=torch.float64)
        projected = project_onto_simplex(v)
        torch.testing.assert_close(projected, bisection_projection(v), atol=1e-12, rtol=0)
        torch.testing.assert_close(project_onto_simplex(projected), projected)
    torch.testing.assert_close(project_onto_simplex(vector([0.2, 0.8])), vector([0.2, 0.8]))


# --- SDMGrad and MoDo: double sampling ------------------------------------------------------


def cross_matrices(seed: int, count: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        first, second = torch.randn(2, 3, 6, generator=generator, dtype=torch.float64)
        out.append(first @ second.T)  # not symmetric, and its diagonal may be negative
    return out


def test_sdmgrad_weights_agree_with_torchjd_over_several_steps() -> None:
    ours = SDMGrad(3)  # lambda 0.3, 20 iterations, inner lr 10, momentum 0.5
    theirs = SDMGradWeighting(lr=10.0, momentum=0.5, n_iter=20, lambda_=0.3)
    for cross in cross_matrices(0, 4):
        torch.testing.assert_close(
            ours.weights_from_cross(cross), theirs(cross), atol=1e-12, rtol=1e-12
        )


def test_sdmgrad_without_regularisation_on_orthogonal_gradients_by_hand() -> None:
    # A = diag(1, 4): scale = mean(1, 2) = 1.5, A / 2.25.  From w = (1/2, 1/2) with lambda 0,
    # one iteration at lr 0.9: grad = A w / 2.25 = (0.2222, 0.8889); w - 0.9 grad =
    # (0.3, -0.3); onto the simplex: (0.8, 0.2).  (1e-8: the scale's guard, 2.25 + 1e-8.)
    method = SDMGrad(2, lambda_=0.0, iterations=1, inner_lr=0.9)
    weights = method.weights_from_cross(torch.diag(vector([1.0, 4.0])))
    torch.testing.assert_close(weights, vector([0.8, 0.2]), atol=1e-8, rtol=0)


def test_modo_step_by_hand_and_against_torchjd() -> None:
    # lambda = (1/2, 1/2), A = diag(1, 4), rho 0.1, gamma 0.1: A lambda + rho lambda =
    # (0.55, 2.05); lambda - 0.1 (...) = (0.445, 0.295); onto the simplex: + 0.13 each.
    method = MoDo(2, gamma=0.1)
    weights = method.weights_from_cross(torch.diag(vector([1.0, 4.0])))
    torch.testing.assert_close(weights, vector([0.575, 0.425]), atol=1e-12, rtol=0)
    ours, theirs = MoDo(3), MoDoWeighting(gamma=1e-3, rho=0.1)  # the defaults
    for cross in cross_matrices(1, 4):
        torch.testing.assert_close(ours.weights_from_cross(cross), theirs(cross))


@pytest.mark.parametrize("name", ["sdmgrad", "modo"])
def test_double_sampling_uses_three_batches(name: str) -> None:
    # The reference: each batch's Jacobian on its own model copy, then the method's rule.
    model = Tiny()
    jacobians, heads = [], []
    for seed in (0, 1, 2):
        model.zero_grad(set_to_none=True)
        jacobians.append(task_jacobian(model.graph(seed=seed)))
        heads.append([grad(p).clone() for h in model.heads for p in h.parameters()])
    reference = make(name, {})
    assert isinstance(reference, DoubleSampling)
    cross = (jacobians[1] @ jacobians[2].T).double()
    expected_weights = reference.weights_from_cross(cross).float()

    model.zero_grad(set_to_none=True)
    graph = model.graph(seed=0)
    graph.samples = (model.graph(seed=1), model.graph(seed=2))
    weights = make(name, {}).backward(graph)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(
        grad(model.encoder.weight).reshape(-1), expected_weights @ jacobians[0]
    )
    own = [grad(p) for h in model.heads for p in h.parameters()]
    for actual, *per_batch in zip(own, *heads, strict=True):  # the mean over the batches
        torch.testing.assert_close(actual, sum(per_batch) / 3)


def test_double_sampling_without_samples_is_the_single_sample_step() -> None:
    model = Tiny()
    jacobian = task_jacobian(model.graph())
    expected, _ = SDMGrad(2).update(jacobian)
    model.zero_grad(set_to_none=True)
    SDMGrad(2).backward(model.graph())
    torch.testing.assert_close(grad(model.encoder.weight).reshape(-1), expected)
    graph = model.graph()
    graph.samples = (model.graph(seed=1),)
    with pytest.raises(ValueError, match="SDMGrad takes 2 extra batches per step, got 1"):
        SDMGrad(2).backward(graph)


def test_extra_batches_depend_on_seed_epoch_and_step_only() -> None:
    first = extra_indices(64, 2, 4, seed=0, epoch=1, step=3)
    assert len(first) == 2 and all(len(i) == 4 and len(set(i.tolist())) == 4 for i in first)
    again = extra_indices(64, 2, 4, seed=0, epoch=1, step=3)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first[0], extra_indices(64, 2, 4, seed=0, epoch=1, step=4)[0])
    assert not torch.equal(first[0], extra_indices(64, 2, 4, seed=1, epoch=1, step=3)[0])
    assert extra_indices(64, 0, 4, seed=0, epoch=1, step=3) == []


def test_the_training_loop_gives_double_sampling_methods_their_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(BENCHMARKS._entries, TINY.name, TINY)
    seen: list[tuple[int, ...]] = []
    backward = DoubleSampling.backward

    def spy(self: DoubleSampling, graph: StepGraph) -> torch.Tensor:
        shapes = [g.losses.shape[0] for g in (graph, *graph.samples)]
        seen.append((len(graph.samples), *shapes))
        return backward(self, graph)

    monkeypatch.setattr(DoubleSampling, "backward", spy)
    for weighting in ("equal", "modo"):
        spec = {
            "benchmark": TINY.name,
            "protocol_version": 1,
            "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
            "weighting": {"name": weighting},
            "optimizer": {"name": "adam", "lr": 1e-3},
        }
        train(spec, seed=0)
    # 2 epochs of 2 steps, each with two more batches; the equal run had none.
    assert seen == [(2, 3, 3, 3)] * 4


# Three epochs of TINY's two steps: a run can be stopped after epoch 2 and resume from 1.
TINY_3 = SyntheticScenes(
    "test-tiny-scenes-3",
    "TINY with 3 epochs (tests only).",
    {1: dataclasses.replace(TINY.protocol(1), epochs=3)},
)


def test_a_double_sampling_run_resumes_bit_identically(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The extra batches depend on (seed, epoch, step) alone, MoDo's state is checkpointed."""
    monkeypatch.setitem(BENCHMARKS._entries, TINY_3.name, TINY_3)
    torch.set_num_threads(1)
    spec = {
        "benchmark": TINY_3.name,
        "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": "modo", "gamma": 0.1},
        "optimizer": {"name": "adam", "lr": 1e-3},
    }
    whole = train(spec, 1)
    resumed = interrupted_then_resumed(spec, 1, 2, tmp_path / "checkpoint.pt")
    assert resumed.metrics == whole.metrics
    assert resumed.curves == whole.curves


# --- checkpoints: a resumed method continues bit for bit ----------------------------------

NEW = ["scale-invariant", "stch", "imtl-full", "fairgrad", "excess-mtl", "moco", "sdmgrad", "modo"]
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    *((name, {}) for name in NEW),
    ("stch", {"variant": "authors-mtl", "warmup_epochs": 1}),
    ("moco", {"projection": "softmax"}),
]


def make(name: str, params: dict[str, Any]) -> Weighting:
    checked = dict(WEIGHTINGS.parameters(name).model_validate(params))
    return WEIGHTINGS.get(name)(2, **checked)


def steps(method: Weighting, model: Tiny, seeds: range) -> list[torch.Tensor]:
    """Method outputs and every gradient over a few steps and epoch ends."""
    out = []
    for seed in seeds:
        model.zero_grad(set_to_none=True)
        method.zero_grad(set_to_none=True)
        graph = model.graph(seed=seed)
        if method.samples_per_step > 1:
            graph.samples = (model.graph(seed=seed + 100), model.graph(seed=seed + 200))
        out.append(method.backward(graph))
        out.extend(grad(p) for p in [*model.parameters(), *method.parameters()])
        method.end_epoch(graph.losses.detach() * (1 + 0.1 * seed))
        with torch.no_grad():  # a fake optimiser step, so that the losses move
            for p in [*model.parameters(), *method.parameters()]:
                p.sub_(0.05 * grad(p))
    return out


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=[f"{n}-{p}" for n, p in VARIANTS])
def test_checkpoint_resume_is_bit_identical(name: str, params: dict[str, Any]) -> None:
    model, method = Tiny(), make(name, params)
    steps(method, model, range(3))
    buffer = io.BytesIO()
    torch.save({"method": method.checkpoint_state(), "model": model.state_dict()}, buffer)
    expected = steps(method, model, range(3, 6))
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_model, resumed = Tiny(), make(name, params)
    resumed_model.load_state_dict(saved["model"])
    resumed.load_checkpoint_state(saved["method"])
    actual = steps(resumed, resumed_model, range(3, 6))
    for a, b in zip(actual, expected, strict=True):
        assert torch.equal(a, b)


def test_every_new_method_is_registered_as_a_gradient_method_or_loss_weighting() -> None:
    kinds = {name: issubclass(WEIGHTINGS.get(name), GradientMethod) for name in NEW}
    assert kinds == {
        "scale-invariant": False,
        "stch": False,
        "imtl-full": True,
        "fairgrad": True,
        "excess-mtl": True,
        "moco": True,
        "sdmgrad": True,
        "modo": True,
    }
