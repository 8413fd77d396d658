from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
import torch
from pydantic import Field
from scipy.optimize import least_squares

from runners.weighting.base import WEIGHTINGS, GramAggregation


def fairgrad_weights(gram: torch.Tensor, alpha: float) -> torch.Tensor:
    """(T,) w > 0 solving G w = w^(-1/alpha), as least squares from the uniform point.

    The authors' solver (scipy's trust-region `least_squares` with w >= 0),
    given the residual's Jacobian G + diag(w^(-1/alpha - 1) / alpha) and
    tight tolerances, so that the system is solved to float64 precision
    rather than to scipy's default 1e-8 relative change.
    """
    matrix = gram.numpy()
    exponent = -1.0 / alpha

    def residual(w: np.ndarray) -> np.ndarray:
        return np.asarray(matrix @ w - np.power(w, exponent))

    def jacobian(w: np.ndarray) -> np.ndarray:
        return np.asarray(matrix + np.diag(-exponent * np.power(w, exponent - 1.0)))

    start = np.full(matrix.shape[0], 1.0 / matrix.shape[0])
    result = least_squares(
        residual, start, jac=jacobian, bounds=(0, np.inf), ftol=1e-15, xtol=1e-15, gtol=1e-15
    )
    return torch.from_numpy(result.x)


@WEIGHTINGS.register("fairgrad")
class FairGrad(GramAggregation):
    """FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024).

    Treats the tasks' loss decreases as utilities and maximises their
    alpha-fair sum: the update d = sum_t w_t g_t with w > 0 solving
        G w = w^(-1/alpha),   i.e.  g_t . d = w_t^(-1/alpha)  for every t,
    so every task's loss decreases to first order (a positive inner product
    with each task gradient).  alpha = 1 is proportional fairness, the
    bargaining system of Nash-MTL without its normalisation (and then the
    update does not depend on the scale of J); alpha -> 0 tends to the plain
    sum, alpha -> infinity to max-min fairness.  Default alpha = 1: LibMTL's
    and the authors' code's default (the paper's Table 2 also reports
    alpha = 2).  Follows the authors' code and LibMTL (least squares on the
    Gram matrix from w = 1/T, w >= 0); our code, with the residual's exact
    Jacobian and tight tolerances.
    """

    properties: ClassVar[frozenset[str]] = frozenset({"permutation_invariant", "non_conflicting"})

    def __init__(
        self, num_tasks: int, *, alpha: Annotated[float, Field(gt=0.0, le=10.0)] = 1.0
    ) -> None:
        super().__init__(num_tasks)
        self.alpha = alpha

    def weights_from_gram(self, gram: torch.Tensor) -> torch.Tensor:
        return fairgrad_weights(gram, self.alpha)
