from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, GramAggregation


def nash_weights(gram: torch.Tensor, iterations: int = 100, tol: float = 1e-20) -> torch.Tensor:
    """The Nash bargaining weights: alpha > 0 with G alpha = 1 / alpha, from G = J J^T.

    That system is the stationarity condition of the strictly convex
        f(alpha) = alpha^T G alpha / 2 - sum_t log alpha_t,
    minimised here by damped Newton steps, alpha <- alpha - H^-1 grad / (1 + lambda)
    with lambda the Newton decrement, which keep alpha > 0 and converge
    quadratically (f is self-concordant).  G is first scaled to unit
    Frobenius norm, as in the authors' code, and 1e-8 is added to its
    diagonal so that linearly dependent gradients still have a solution
    (then the update is ~0 along the dependency).
    For orthogonal gradients, alpha_t = 1 / |g_t|.
    """
    n = gram.shape[0]
    scale = float(gram.norm())
    if scale <= 0:
        return torch.ones(n, dtype=torch.float64)
    a = gram / scale + 1e-8 * torch.eye(n, dtype=torch.float64)
    alpha = torch.ones(n, dtype=torch.float64)
    for _ in range(iterations):
        gradient = a @ alpha - 1 / alpha
        hessian = a + torch.diag(1 / alpha**2)
        step = torch.linalg.solve(hessian, gradient)
        decrement_sq = float(gradient @ step)
        if decrement_sq < tol:
            break
        alpha = alpha - step / (1 + decrement_sq**0.5)
    return alpha / scale**0.5


@WEIGHTINGS.register("nash-mtl")
class NashMTL(GramAggregation):
    """Nash-MTL, "Multi-Task Learning as a Bargaining Game" (Navon et al., ICML 2022).

    The update d = sum_t alpha_t g_t is the Nash bargaining solution: the
    alpha > 0 with G alpha = 1 / alpha, i.e. d . g_t = 1 / alpha_t for every
    task (so d conflicts with no task, and |d|^2 = T whatever the gradients'
    scale).  Then, as in the authors' code, the update is clipped to norm
    `max_norm` (their default 1.0; 0 disables; the clip acts on the shared
    parameters' update, computed from G, so without a host sync).

    Our implementation (see `nash_weights`): it solves the bargaining system
    exactly by Newton's method on the T x T Gram matrix on the CPU.  The
    authors' code (and torchjd's `NashMTL`, a port of it) approximates the
    same solution by up to 20 convex-concave steps, each a conic program
    solved by cvxpy with ECOS, warm-started from the previous step; that
    would add cvxpy and its solver packages to the dependencies and cost
    more than a training step.  Their `update_weights_every` (default 1)
    is not offered.
    """

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "scale_invariant", "non_conflicting"}
    )

    def __init__(
        self, num_tasks: int, *, max_norm: Annotated[float, Field(ge=0.0, le=1000.0)] = 1.0
    ) -> None:
        super().__init__(num_tasks)
        self.max_norm = max_norm

    def weights_from_gram(self, gram: torch.Tensor) -> torch.Tensor:
        alpha = nash_weights(gram)
        if self.max_norm > 0:
            norm = float(alpha @ gram @ alpha) ** 0.5
            if norm > self.max_norm:
                alpha = alpha * (self.max_norm / norm)
        return alpha
