from __future__ import annotations

from typing import ClassVar

import torch
from torchjd.aggregation import UPGradWeighting
from torchjd.linalg import QuadprogProjector

from runners.weighting.base import WEIGHTINGS, GramAggregation


@WEIGHTINGS.register("upgrad")
class UPGrad(GramAggregation):
    """UPGrad, "Jacobian Descent for Multi-Objective Optimization" (Quinton & Rey, 2024).

    Each task gradient is projected onto the dual cone of all of them,
    {x : x . g_s >= 0 for every s}, and the update is the mean of the
    projections:
        d = (1/T) sum_t pi(g_t).
    So d conflicts with no task, and rows that already agree (g_t . g_s >= 0
    for all pairs) are left alone: then d is the mean gradient.  Each
    projection is a T-dimensional quadratic program on the Gram matrix,
    min_v v^T G v subject to v >= e_t.  Implementation: torchjd's
    `UPGradWeighting` with its quadprog projector, on the CPU.  The
    projector normalises G by its trace and adds `reg_eps` to the diagonal;
    we pass 1e-8 instead of its default 1e-4, which biases the projections
    enough to break the no-conflict guarantee when G is ill-conditioned
    (condition number ~1e4, as with strongly correlated tasks; see the
    property tests).  Its update is on the scale of the mean gradient, 1/T
    of equal weighting's sum.
    """

    properties: ClassVar[frozenset[str]] = frozenset(
        {"permutation_invariant", "homogeneous", "non_conflicting"}
    )

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self._solver = UPGradWeighting(projector=QuadprogProjector(reg_eps=1e-8))

    def weights_from_gram(self, gram: torch.Tensor) -> torch.Tensor:
        weights: torch.Tensor = self._solver(gram)
        return weights
