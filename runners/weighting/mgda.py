from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, GradientAggregation


def min_norm_weights(gram: torch.Tensor, iterations: int = 250, tol: float = 1e-10) -> torch.Tensor:
    """The point of the simplex minimising w^T G w (Sener & Koltun's min-norm problem).

    Two tasks have the closed form w_1 = clip(<g2 - g1, g2> / |g1 - g2|^2, 0, 1).
    More tasks: Frank-Wolfe with exact line search, started from the best
    vertex or pair, as in the MGDA paper's MinNormSolver.
    """
    gram = gram.double()
    n = gram.shape[0]
    if n == 1:
        return torch.ones(1, dtype=gram.dtype, device=gram.device)
    if n == 2:
        denom = gram[0, 0] + gram[1, 1] - 2 * gram[0, 1]
        w1 = (
            ((gram[1, 1] - gram[0, 1]) / denom).clamp(0.0, 1.0)
            if denom > 0
            else torch.tensor(0.5, dtype=gram.dtype, device=gram.device)
        )
        return torch.stack([w1, 1 - w1])
    w = torch.full((n,), 1.0 / n, dtype=gram.dtype, device=gram.device)
    for _ in range(iterations):
        gradient = gram @ w
        vertex = int(torch.argmin(gradient))
        # Line search on w + gamma (e_v - w): minimise a quadratic in gamma.
        direction = -w.clone()
        direction[vertex] += 1.0
        curvature = direction @ gram @ direction
        if curvature <= 0:
            break
        gamma = float((-(direction @ gradient) / curvature).clamp(0.0, 1.0))
        if gamma * float(direction.abs().max()) < tol:
            break
        w = w + gamma * direction
    return w


@WEIGHTINGS.register("mgda")
class MGDA(GradientAggregation):
    """MGDA, "Multi-Task Learning as Multi-Objective Optimization" (Sener & Koltun, NeurIPS 2018).

    The update is the minimum-norm element of the convex hull of the exact
    per-task gradients of the shared parameters (not the MGDA-UB upper-bound
    approximation), so it decreases every task's loss to first order.
    `normalization="l2"` rescales each gradient to unit norm first.
    Our implementation; the default matches LibMTL's (no normalisation).
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        normalization: Literal["none", "l2"] = "none",
        iterations: Annotated[int, Field(ge=1, le=10_000)] = 250,
    ) -> None:
        super().__init__(num_tasks)
        self.normalization = normalization
        self.iterations = iterations

    def aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        # The T x T Gram matrix is all the solver needs: solve it on the CPU,
        # one device-to-host copy per step instead of a sync per iteration.
        gram = (jacobian @ jacobian.T).double().cpu()
        scale = torch.ones(gram.shape[0], dtype=torch.float64)
        if self.normalization == "l2":
            scale = 1.0 / gram.diagonal().sqrt().clamp(min=1e-12)
        weights = min_norm_weights(gram * scale[:, None] * scale[None, :], self.iterations) * scale
        return weights.to(jacobian.device, jacobian.dtype)
