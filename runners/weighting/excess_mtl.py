from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, GradientAggregation


@WEIGHTINGS.register("excess-mtl")
class ExcessMTL(GradientAggregation):
    """ExcessMTL (He, Zhou, Zhao & Hovy, "Robust Multi-Task Learning with Excess Risks", ICML 2024).

    Weighs tasks by their excess risk (the distance to their own optimum),
    not their loss, so that a task with high irreducible noise does not take
    over.  Per task, the excess risk is estimated to second order (Eqs. 6-7)
    as g_t^T H_t^{-1} g_t, with H_t the AdaGrad diagonal preconditioner of
    the task's gradients (S_t <- S_t + g_t^2 elementwise, H_t = sqrt(S_t + 1e-7)):
        e_t = sum_i g_ti^2 / sqrt(S_ti + 1e-7).
    The first step's estimates are the baseline e_t(1) (Section 3.2's scale
    processing); every later step makes an exponentiated-gradient step
    (Eq. 9) on the weights with the relative excess risks,
        w_t <- w_t exp(eta e_t / e_t(1)),   then rescaled to sum T,
    and the update is sum_t w_t g_t.  The weights start at 1 and keep the
    first step unchanged.

    Follows the authors' code, as copied into LibMTL (weights summing to T,
    baseline from the first step, eta = robust_step_size = 1e-2, their
    default); the paper puts the weights on the simplex (sum 1) and collects
    the baseline over warm-up epochs, which torchjd's `ExcessMTLWeighting`
    offers.  Differences from LibMTL: task-specific parameters get their own
    task's plain gradient (as with every gradient method here) rather than
    w_t times it, and the exponentiated step is taken in log space (a
    softmax), which is the same number but cannot overflow.  The per-task
    sums S are a T x P buffer on the device, saved in checkpoints.
    """

    _squares: torch.Tensor | None
    _baseline: torch.Tensor | None
    _weights: torch.Tensor | None

    def __init__(
        self,
        num_tasks: int,
        *,
        robust_step_size: Annotated[float, Field(gt=0.0, le=100.0)] = 1e-2,
    ) -> None:
        super().__init__(num_tasks)
        self.robust_step_size = robust_step_size
        self.register_buffer("_squares", None)
        self.register_buffer("_baseline", None)
        self.register_buffer("_weights", None)

    def aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        squared = jacobian.detach() ** 2
        if self._squares is None or self._squares.shape != jacobian.shape:
            self._squares = torch.zeros_like(squared)
            self._baseline = None
            self._weights = torch.ones(self.num_tasks, dtype=jacobian.dtype, device=jacobian.device)
        self._squares.add_(squared)
        excess = (squared / torch.sqrt(self._squares + 1e-7)).sum(dim=1)
        assert self._weights is not None
        if self._baseline is None:
            self._baseline = excess
        else:
            logits = torch.log(self._weights) + self.robust_step_size * excess / self._baseline
            self._weights = self.num_tasks * torch.softmax(logits, dim=0)
        return self._weights
