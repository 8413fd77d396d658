"""Golden values: small hand-built 2- and 3-task problems with answers worked out by hand.

Each case states its answer and where it comes from; tolerances are explicit
(1e-6 for closed forms, looser where a solver with its own tolerance runs:
quadprog for UPGrad, SLSQP for CAGrad).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn
from torchjd.aggregation import MGDAWeighting, PCGradWeighting

from runners.weighting import WEIGHTINGS, GradientMethod, StepGraph
from runners.weighting import base as weighting_base
from runners.weighting.base import task_jacobian
from runners.weighting.db_mtl import DBMTL
from runners.weighting.dtp import DTP
from runners.weighting.famo import FAMO
from runners.weighting.fixed import Fixed
from runners.weighting.gls import GLS
from runners.weighting.gradnorm import GradNorm
from runners.weighting.mgda import min_norm_weights
from runners.weighting.mgda_ub import MGDAUB
from runners.weighting.rlw import RLW


def matrix(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


ORTHOGONAL_1_2 = [[1.0, 0.0], [0.0, 2.0]]  # g1 = e1, g2 = 2 e2
CONFLICTING = [[1.0, 0.0], [-1.0, 1.0]]  # <g1, g2> = -1
AGREEING_3 = [[1.0, 0.5], [0.5, 1.0], [1.0, 1.0]]  # every pair has a positive inner product
ORTHOGONAL_1_2_4 = [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 4.0]]

# (method, parameters, Jacobian, expected weights w (update = w @ J), tolerance, why)
GOLDEN: list[tuple[str, dict[str, Any], list[list[float]], list[float], float, str]] = [
    (
        "mgda",
        {},
        ORTHOGONAL_1_2,
        [0.8, 0.2],
        1e-9,
        "two tasks: w1 = <g2 - g1, g2> / |g1 - g2|^2 = 4/5",
    ),
    (
        "mgda",
        {},
        [[1.0, 0.0], [-1.0, 0.0]],
        [0.5, 0.5],
        1e-9,
        "opposite gradients: the min-norm point is 0",
    ),
    (
        "mgda",
        {"iterations": 10_000},
        AGREEING_3,
        [0.5, 0.5, 0.0],
        1e-6,
        "the min-norm point of the hull is (0.75, 0.75), on the segment [g1, g2]",
    ),
    (
        "pcgrad",
        {},
        CONFLICTING,
        [2.0, 1.5],
        1e-9,
        "g1' = g1 + g2/2, g2' = g2 + g1: update (0.5, 1.5) = 2 g1 + 1.5 g2",
    ),
    ("pcgrad", {}, AGREEING_3, [1.0, 1.0, 1.0], 1e-9, "no conflict: the sum"),
    (
        "imtl",
        {},
        ORTHOGONAL_1_2,
        [2 / 3, 1 / 3],
        1e-9,
        "d = (2/3, 2/3) projects equally on e1 and e2",
    ),
    (
        "imtl",
        {},
        ORTHOGONAL_1_2_4,
        [4 / 7, 2 / 7, 1 / 7],
        1e-9,
        "orthogonal: w_t proportional to 1/|g_t|, summing to 1",
    ),
    ("cagrad", {"c": 0.0}, CONFLICTING, [1.0, 1.0], 1e-6, "c = 0: the summed gradient"),
    (
        "cagrad",
        {"c": 0.4},
        [[1.0, 0.0], [0.0, 1.0]],
        [1.4 / 1.16] * 2,
        1e-5,
        "orthonormal: p = (1/2, 1/2), lambda = c, w = T (1/T + c/2) / (1 + c^2)",
    ),
    ("upgrad", {}, AGREEING_3, [1 / 3] * 3, 1e-6, "agreeing rows are not projected: the mean"),
    (
        "upgrad",
        {},
        CONFLICTING,
        [1.0, 0.75],
        1e-6,
        "pi(g1) = g1 + g2/2, pi(g2) = g1 + g2; mean = g1 + 0.75 g2",
    ),
    (
        "nash-mtl",
        {"max_norm": 0.0},
        ORTHOGONAL_1_2,
        [1.0, 0.5],
        1e-6,
        "orthogonal: G alpha = 1/alpha gives alpha_t = 1/|g_t|",
    ),
    (
        "nash-mtl",
        {"max_norm": 0.0},
        ORTHOGONAL_1_2_4,
        [1.0, 0.5, 0.25],
        1e-6,
        "orthogonal: alpha_t = 1/|g_t|",
    ),
    (
        "nash-mtl",
        {},
        ORTHOGONAL_1_2,
        [1 / math.sqrt(2), 0.5 / math.sqrt(2)],
        1e-6,
        "|d|^2 = alpha^T G alpha = T = 2, clipped to max_norm 1",
    ),
    (
        "aligned-mtl",
        {},
        ORTHOGONAL_1_2,
        [0.5, 0.25],
        1e-9,
        "B = sqrt(lambda_min) G^(-1/2) = diag(1, 1/2); w = B (1/2, 1/2)",
    ),
    (
        "aligned-mtl",
        {},
        ORTHOGONAL_1_2_4,
        [1 / 3, 1 / 6, 1 / 12],
        1e-9,
        "orthogonal: w_t = min_s |g_s| / (T |g_t|): aligned gradients of equal norm",
    ),
    (
        "gradvac",
        {},
        AGREEING_3,
        [1.0, 1.0, 1.0],
        1e-9,
        "targets start at 0 and every similarity exceeds them: no change",
    ),
    (
        "gradvac",
        {},
        CONFLICTING,
        [2.0, 1.5],
        1e-6,
        "target 0: the correction of a conflicting pair is PCGrad's projection",
    ),
]


@pytest.mark.parametrize(
    ("name", "params", "rows", "expected", "tolerance", "why"),
    GOLDEN,
    ids=[f"{case[0]}-{i}" for i, case in enumerate(GOLDEN)],
)
def test_golden_weights(
    name: str,
    params: dict[str, Any],
    rows: list[list[float]],
    expected: list[float],
    tolerance: float,
    why: str,
) -> None:
    jacobian = matrix(rows)
    checked = dict(WEIGHTINGS.parameters(name).model_validate(params))
    method = WEIGHTINGS.get(name)(len(rows), **checked)
    assert isinstance(method, GradientMethod)
    direction, weights = method.update(jacobian)
    torch.testing.assert_close(weights, matrix([expected])[0], atol=tolerance, rtol=0, msg=why)
    torch.testing.assert_close(direction, weights @ jacobian)


def imtl_two_task_closed_form(jacobian: torch.Tensor) -> torch.Tensor:
    """IMTL-G for two tasks as the paper writes it: alpha_2 = g1 . U / (D . U)."""
    g1, g2 = jacobian
    u = g1 / g1.norm() - g2 / g2.norm()
    alpha_2 = (g1 @ u) / ((g1 - g2) @ u)
    return torch.stack([1 - alpha_2, alpha_2])


@pytest.mark.parametrize(
    "rows",
    [[[1.0, 0.0], [1.0, 1.0]], [[3.0, 1.0, 0.0], [-1.0, 2.0, 1.0]], [[1.0, 2.0], [4.0, -1.0]]],
)
def test_imtl_two_tasks_equals_the_closed_form(rows: list[list[float]]) -> None:
    jacobian = matrix(rows)
    weights = WEIGHTINGS.get("imtl")(2).aggregate(jacobian)
    torch.testing.assert_close(weights, imtl_two_task_closed_form(jacobian), atol=1e-9, rtol=0)
    d = weights @ jacobian  # equal projections on the unit gradients
    unit = jacobian / jacobian.norm(dim=1, keepdim=True)
    torch.testing.assert_close(unit[0] @ d, unit[1] @ d)


def test_cagrad_dual_matches_a_grid_search() -> None:
    from runners.weighting.cagrad import cagrad_weights

    jacobian = matrix([[1.0, 0.2, 0.0], [-0.8, 1.0, 0.3], [0.1, -0.5, 2.0]])
    gram = jacobian @ jacobian.T
    c = 0.4
    weights = cagrad_weights(gram, c)
    g0 = jacobian.mean(dim=0)
    direction = weights @ jacobian * (1 + c**2) / 3  # undo the rescale: d = g0 + lambda g_p
    # d is in the ball |d - g0| <= c |g0| (on its boundary) ...
    assert abs(float((direction - g0).norm()) - c * float(g0.norm())) < 1e-6
    # ... and maximises the worst task's improvement there: compare with sampled points.
    worst = float((jacobian @ direction).min())
    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(20_000, 3, generator=generator, dtype=torch.float64)
    samples = g0 + c * float(g0.norm()) * samples / samples.norm(dim=1, keepdim=True)
    assert worst >= float((samples @ jacobian.T).min(dim=1).values.max()) - 1e-6


def test_nash_mtl_solves_the_bargaining_system() -> None:
    from runners.weighting.nash_mtl import nash_weights

    jacobian = matrix([[1.0, 0.5, 0.0], [0.2, 1.0, -0.4], [-0.3, 0.1, 2.0]])
    gram = jacobian @ jacobian.T
    alpha = nash_weights(gram)
    assert bool((alpha > 0).all())
    torch.testing.assert_close(gram @ alpha, 1 / alpha, atol=1e-6, rtol=1e-6)


def test_mgda_agrees_with_torchjd() -> None:
    generator = torch.Generator().manual_seed(5)
    jacobian = torch.randn(3, 9, generator=generator, dtype=torch.float64)
    gram = jacobian @ jacobian.T
    ours = WEIGHTINGS.get("mgda")(3, iterations=10_000).aggregate(jacobian)
    theirs = MGDAWeighting(epsilon=1e-9, max_iters=10_000)(gram)
    # torchjd runs Frank-Wolfe, which converges slowly near the optimum; ours solves
    # three tasks exactly: the same point to 1e-3, and ours is no worse.
    torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=0)
    assert float(ours @ gram @ ours) <= float(theirs @ gram @ theirs) + 1e-12


def test_pcgrad_agrees_with_torchjd_for_two_tasks() -> None:
    # With two tasks the projection order does not matter.
    jacobian = matrix([[2.0, -1.0, 0.5], [-1.0, 0.3, 1.0]])
    ours = WEIGHTINGS.get("pcgrad")(2).aggregate(jacobian)
    torch.testing.assert_close(ours, PCGradWeighting()(jacobian @ jacobian.T))


def test_graddrop_without_sign_conflicts_is_the_sum() -> None:
    jacobian = matrix([[1.0, 2.0, -1.0], [3.0, 0.5, -2.0]])  # each column has one sign
    direction, weights = WEIGHTINGS.get("graddrop")(2).update(jacobian)
    torch.testing.assert_close(direction, jacobian.sum(dim=0))
    torch.testing.assert_close(weights, torch.ones(2, dtype=torch.float64))


def test_graddrop_keeps_one_sign_per_coordinate() -> None:
    jacobian = matrix([[1.0, -2.0], [-3.0, 1.0]])
    for seed in range(10):
        method = WEIGHTINGS.get("graddrop")(2)
        method.reseed(seed)
        direction, _ = method.update(jacobian)
        # Each coordinate is the sum of its positive parts or of its negative parts.
        assert direction[0].item() in (1.0, -3.0) and direction[1].item() in (1.0, -2.0)


def test_db_mtl_balances_averaged_gradients() -> None:
    method = DBMTL(2)  # beta 0.9, sigma 0
    jacobian = matrix([[3.0, 4.0], [0.0, 1.0]])
    direction, weights = method.update(jacobian)
    # Step 1: h = 0.1 J, norms (0.5, 0.1), scales (1, 5): d = (0.3, 0.4) + 5 (0, 0.1).
    torch.testing.assert_close(weights, matrix([[1.0, 5.0]])[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(direction, matrix([[0.3, 0.9]])[0], atol=1e-6, rtol=0)
    direction, _ = method.update(jacobian)
    # Step 2: h = J + 0.9 (0.1 J - J) = 0.19 J.
    torch.testing.assert_close(direction, 1.9 * matrix([[0.3, 0.9]])[0], atol=1e-6, rtol=0)


class Tiny(nn.Module):
    """z = W x with W shared, two linear heads: small enough to check by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(3, 2, bias=False)
        self.heads = nn.ModuleList([nn.Linear(2, 1), nn.Linear(2, 1)])

    def graph(self, with_representation: bool = True) -> StepGraph:
        x = torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0]])
        z = self.encoder(x)
        losses = [((h(z) - 1.0) ** 2).mean() + 0.5 for h in self.heads]
        return StepGraph(
            losses,
            z if with_representation else None,
            list(self.encoder.parameters()),
            [list(h.parameters()) for h in self.heads],
        )


def test_db_mtl_differentiates_the_log_losses() -> None:
    torch.manual_seed(0)
    model = Tiny()
    graph = model.graph()
    expected = task_jacobian(model.graph()) / graph.losses.detach()[:, None]
    torch.testing.assert_close(DBMTL(2).jacobian(graph), expected)


def test_gls_weights_and_gradient() -> None:
    losses = torch.tensor([1.0, 4.0], requires_grad=True)
    weights = GLS(2).backward(StepGraph(list(losses), None, [], [[], []]))
    # L = sqrt(L1 L2) = 2; dL/dL_t = L / (2 L_t) = (1, 1/4).
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.25]))
    torch.testing.assert_close(losses.grad, torch.tensor([1.0, 0.25]))


def test_fixed_weights_and_their_checks() -> None:
    torch.testing.assert_close(
        Fixed(2, task_weights=[2.0, 0.5]).weights(torch.ones(2)), torch.tensor([2.0, 0.5])
    )
    torch.testing.assert_close(Fixed(3).weights(torch.ones(3)), torch.ones(3))
    with pytest.raises(ValueError, match="task_weights has 2 entries but the benchmark has 3"):
        Fixed(3, task_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="must not all be 0"):
        Fixed(2, task_weights=[0.0, 0.0])


def test_rlw_draws_softmax_of_normal_samples_reproducibly() -> None:
    expected = torch.softmax(torch.randn(3, generator=torch.Generator().manual_seed(7)), dim=0)
    a, b = RLW(3), RLW(3)
    a.reseed(7)
    b.reseed(7)
    first = a.weights(torch.ones(3))
    torch.testing.assert_close(first, expected)
    assert abs(float(first.sum()) - 1) < 1e-6
    torch.testing.assert_close(b.weights(torch.ones(3)), first)
    assert not torch.equal(a.weights(torch.ones(3)), first)  # a new draw every step


def test_dtp_focal_weights_of_smoothed_kpis() -> None:
    dtp = DTP(2, gamma=1.0, alpha=0.9)
    # Step 1: kappa = exp(-L); w = -(1 - kappa) log kappa = (1 - e^-L) L.
    first = dtp.weights(torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(first, torch.tensor([1 - math.exp(-1), 2 * (1 - math.exp(-2))]))
    # Step 2: kappa_bar = 0.9 exp(-2) + 0.1 kappa_bar for task 1; task 2 unchanged.
    second = dtp.weights(torch.tensor([2.0, 2.0]))
    k1 = 0.9 * math.exp(-2) + 0.1 * math.exp(-1)
    torch.testing.assert_close(second, torch.tensor([-(1 - k1) * math.log(k1), first[1].item()]))


def test_famo_weights_and_logit_update() -> None:
    famo = FAMO(2)  # w_lr 0.025, gamma 0.01
    # Logits 0: z = (1/2, 1/2); c = 0.5/1 + 0.5/4 = 0.625; w = z / (c L) = (0.8, 0.2).
    torch.testing.assert_close(famo.weights(torch.tensor([1.0, 4.0])), torch.tensor([0.8, 0.2]))
    # Next losses (0.5, 4): delta = (log 2, 0); grad = z (delta - z.delta) = (+, -) log(2)/4.
    # Adam's first step moves each logit by lr against the sign of its gradient (decay 0 at 0).
    second = famo.weights(torch.tensor([0.5, 4.0]))
    torch.testing.assert_close(famo.logits, torch.tensor([-0.025, 0.025]), atol=1e-6, rtol=0)
    z = torch.softmax(torch.tensor([-0.025, 0.025]), dim=0)
    expected = z / torch.tensor([0.5, 4.0])
    torch.testing.assert_close(second, expected / expected.sum(), atol=1e-6, rtol=0)


def test_gradnorm_weight_gradient_and_renormalisation() -> None:
    torch.manual_seed(0)
    model = Tiny()
    method = GradNorm(2, alpha=1.5)
    graph = model.graph()
    # By hand: n_t = |dL_t/dW|; step 1 has r_t = 1, so the target is mean_t(n_t).
    norms = torch.stack(
        [
            torch.autograd.grad(loss, model.encoder.weight, retain_graph=True)[0].norm()
            for loss in graph.task_losses
        ]
    )
    expected_shared = torch.autograd.grad(
        sum(graph.task_losses), model.encoder.weight, retain_graph=True
    )[0]
    weights = method.backward(graph)
    torch.testing.assert_close(weights, torch.ones(2))
    torch.testing.assert_close(method.loss_weights.grad, torch.sign(norms - norms.mean()) * norms)
    torch.testing.assert_close(model.encoder.weight.grad, expected_shared)
    # After the optimiser's step the weights are renormalised to sum T.
    with torch.no_grad():
        method.loss_weights -= 0.3 * method.loss_weights.grad.sign()
    model.zero_grad()
    weights = method.backward(model.graph())
    assert abs(float(weights.sum()) - 2) < 1e-6 and float(weights[0]) != float(weights[1])


def test_gradnorm_with_and_without_a_representation_agree() -> None:
    results = []
    for with_representation in (True, False):
        torch.manual_seed(0)
        model = Tiny()
        method = GradNorm(2)
        method.backward(model.graph(with_representation))
        with torch.no_grad():
            method.loss_weights += torch.tensor([0.5, -0.2])
        model.zero_grad()
        method.backward(model.graph(with_representation))
        results.append([method.loss_weights.grad, *(p.grad for p in model.parameters())])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


def test_mgda_ub_solves_on_the_representation_with_one_encoder_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def forbidden(graph: StepGraph) -> torch.Tensor:
        raise AssertionError("mgda-ub must not build the parameter Jacobian")

    monkeypatch.setattr(weighting_base, "task_jacobian", forbidden)
    torch.manual_seed(0)
    model = Tiny()
    passes: list[int] = []  # backward passes that reach the encoder's weight
    model.encoder.weight.register_hook(lambda grad: passes.append(1))
    graph = model.graph()
    z = graph.shared_representation
    assert z is not None
    z_grads = [torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in graph.task_losses]
    flat = torch.stack([g.reshape(-1) for g in z_grads]).double()
    expected_weights = min_norm_weights(flat @ flat.T).float()
    expected_shared = torch.autograd.grad(
        sum(w * loss for w, loss in zip(expected_weights, graph.task_losses, strict=True)),
        model.encoder.weight,
        retain_graph=True,
    )[0]
    expected_heads = [
        torch.autograd.grad(loss, list(head.parameters()), retain_graph=True)
        for loss, head in zip(graph.task_losses, model.heads, strict=True)
    ]
    passes.clear()
    weights = MGDAUB(2).backward(graph)
    assert len(passes) == 1
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(model.encoder.weight.grad, expected_shared)
    for head, grads in zip(model.heads, expected_heads, strict=True):  # plain task gradients
        for p, g in zip(head.parameters(), grads, strict=True):
            torch.testing.assert_close(p.grad, g)
