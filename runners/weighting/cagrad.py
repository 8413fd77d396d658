from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
import torch
from pydantic import Field
from scipy.optimize import minimize

from runners.weighting.base import WEIGHTINGS, GramAggregation


def cagrad_weights(gram: torch.Tensor, c: float) -> torch.Tensor:
    """Weights w with w @ J equal to CAGrad's update, from G = J J^T (float64, CPU).

    With g_0 the mean gradient, CAGrad maximises the worst task's
    improvement within a ball around g_0,
        max_d min_t <g_t, d>  subject to  |d - g_0| <= c |g_0|,
    through its dual over the simplex,
        min_p  p^T G 1/T + c |g_0| sqrt(p^T G p),
    solved as in the authors' code by SLSQP (here with its exact gradient,
    on G scaled to unit mean diagonal: the minimiser does not depend on
    the scale).  The update is d = (g_0 + c |g_0| / |g_p| g_p) / (1 + c^2)
    (the authors' `rescale=1`), times T to match the scale of the summed
    loss, as the authors' NYUv2 code does; so c = 0 gives equal weighting.
    """
    n = gram.shape[0]
    mean_diagonal = float(gram.diagonal().mean())
    if mean_diagonal <= 0:
        return torch.ones(n, dtype=torch.float64)
    a = (gram / mean_diagonal).numpy()
    b = np.full(n, 1.0 / n)
    g0_norm = float(np.sqrt(b @ a @ b + 1e-8))
    radius = c * g0_norm + 1e-8

    def objective(p: np.ndarray) -> float:
        return float(p @ a @ b + radius * np.sqrt(p @ a @ p + 1e-8))

    def gradient(p: np.ndarray) -> np.ndarray:
        return np.asarray(a @ b + radius * (a @ p) / np.sqrt(p @ a @ p + 1e-8))

    result = minimize(
        objective,
        b.copy(),
        jac=gradient,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n,
        constraints=[{"type": "eq", "fun": lambda p: 1.0 - p.sum(), "jac": lambda p: -np.ones(n)}],
        options={"ftol": 1e-12, "maxiter": 200},
    )
    p = np.clip(result.x, 0.0, None)
    gp_norm = float(np.sqrt(max(p @ a @ p, 0.0)))
    lam = radius / (gp_norm + 1e-8)
    weights = n * (b + lam * p) / (1 + c**2)
    return torch.from_numpy(weights)


@WEIGHTINGS.register("cagrad")
class CAGrad(GramAggregation):
    """CAGrad, Conflict-Averse Gradient Descent for Multi-task Learning (Liu et al., NeurIPS 2021).

    See `cagrad_weights` for the formula.  Default c = 0.4, the value of the
    paper's NYUv2 and Cityscapes experiments (the authors' `run.sh`; their
    function's default, also LibMTL's, is 0.5).

    Our implementation, following the authors' code (scipy's SLSQP on the
    T x T Gram matrix, on the CPU).  torchjd's `CAGradWeighting` solves the
    same dual with cvxpy and the Clarabel solver, which would add cvxpy and
    its solver packages to the dependencies and a conic solve per step; it
    also returns the update on the scale of the mean gradient.
    """

    properties: ClassVar[frozenset[str]] = frozenset({"permutation_invariant", "homogeneous"})

    def __init__(self, num_tasks: int, *, c: Annotated[float, Field(ge=0.0, le=10.0)] = 0.4):
        super().__init__(num_tasks)
        self.c = c

    def weights_from_gram(self, gram: torch.Tensor) -> torch.Tensor:
        return cagrad_weights(gram, self.c)
