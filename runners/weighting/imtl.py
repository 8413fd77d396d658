from __future__ import annotations

from typing import ClassVar

import torch
from torchjd.aggregation import IMTLGWeighting

from runners.weighting.base import WEIGHTINGS, GramAggregation


@WEIGHTINGS.register("imtl")
class IMTLG(GramAggregation):
    """IMTL-G (Liu et al., ICLR 2021).

    The gradient balancing of "Towards Impartial Multi-task Learning".  The
    update d = sum_t w_t g_t with sum_t w_t = 1 has equal projections on
    every task's unit gradient: d . g_t / |g_t| is the same for all t.
    With G = J J^T and n_t = |g_t| = sqrt(G_tt), the weights are
        w = G^+ n / (1^T G^+ n),
    which for two tasks is the closed form w_2 = g_1 . (u_1 - u_2) / ((g_1 - g_2) . (u_1 - u_2)).
    Only the gradient half (IMTL-G) of the paper's hybrid IMTL: its loss
    half (IMTL-L, learnt loss scales) is not included.  Implementation:
    torchjd's `IMTLGWeighting` (the pseudo-inverse generalisation of the
    paper's formula that also accepts linearly dependent gradients), on the
    Gram matrix on the CPU.
    """

    properties: ClassVar[frozenset[str]] = frozenset({"permutation_invariant", "homogeneous"})

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self._solver = IMTLGWeighting()

    def weights_from_gram(self, gram: torch.Tensor) -> torch.Tensor:
        weights: torch.Tensor = self._solver(gram)
        return weights
