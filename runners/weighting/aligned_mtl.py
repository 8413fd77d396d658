from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torchjd.aggregation import AlignedMTLWeighting

from runners.weighting.base import WEIGHTINGS, GramAggregation


@WEIGHTINGS.register("aligned-mtl")
class AlignedMTL(GramAggregation):
    """Aligned-MTL (Senushkin et al., CVPR 2023).

    "Independent Component Alignment for Multi-Task Learning".  Makes the
    task gradients orthogonal and of equal norm before averaging them, which
    removes conflicts and dominance at once.  With the
    eigendecomposition G = J J^T = V diag(lambda) V^T (rank r, lambda
    decreasing), the balance transformation is
        B = sqrt(lambda_min) V diag(lambda)^(-1/2) V^T,
    and the weights are w = B (1/T) 1 (update d = w @ J): the aligned
    gradients all have norm sqrt(lambda_min) (`scale_mode="min"`, the
    paper's Algorithm 1; "median" and "rmse" use the median or mean
    eigenvalue, "rmse" as in the authors' code).  For orthogonal g_t the
    weights are (1/T) min_s |g_s| / |g_t|.  Implementation: torchjd's
    `AlignedMTLWeighting`, on the Gram matrix on the CPU.
    """

    properties: ClassVar[frozenset[str]] = frozenset({"permutation_invariant", "homogeneous"})

    def __init__(
        self, num_tasks: int, *, scale_mode: Literal["min", "median", "rmse"] = "min"
    ) -> None:
        super().__init__(num_tasks)
        self.scale_mode = scale_mode
        self._solver = AlignedMTLWeighting(scale_mode=scale_mode)

    def weights_from_gram(self, gram: torch.Tensor) -> torch.Tensor:
        weights: torch.Tensor = self._solver(gram)
        return weights
