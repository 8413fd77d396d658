from __future__ import annotations

import dataclasses
from typing import Annotated, ClassVar

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, GradientMethod, StepGraph, task_jacobian


@WEIGHTINGS.register("db-mtl")
class DBMTL(GradientMethod):
    """DB-MTL, "Dual-Balancing for Multi-Task Learning" (Lin, Ye, Xu, Shi & Zhang, 2023).

    Loss-scale balancing: every task minimises log(L_t + 1e-8), so each
    task's gradient is grad L_t / L_t.  Gradient-magnitude balancing: with
    g_t the rows of the Jacobian of the log-losses and k the step,
        h_t <- g_t + beta_k (h_t - g_t),   beta_k = beta / k^sigma   (EMA, h_t = 0 at start)
        update = sum_t (max_s |h_s| / |h_t|) h_t,
    every task contributes as much as the task with the largest gradient.
    Task-specific parameters get grad log L_t.  Defaults beta = 0.9,
    sigma = 0 are those of LibMTL, the authors' library; this follows its
    `DB_MTL` (ours: torchjd has no DB-MTL).  Reported weights: the scale
    factors max_s |h_s| / |h_t|, applied to the averaged log-loss gradients.
    The EMA keeps a T x P buffer on the device.
    """

    properties: ClassVar[frozenset[str]] = frozenset({"permutation_invariant", "homogeneous"})

    def __init__(
        self,
        num_tasks: int,
        *,
        beta: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9,
        beta_sigma: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0,
    ) -> None:
        super().__init__(num_tasks)
        self.beta = beta
        self.beta_sigma = beta_sigma
        self._step = 0
        self._average: torch.Tensor | None = None

    def jacobian(self, graph: StepGraph) -> torch.Tensor:
        log_losses = [torch.log(loss + 1e-8) for loss in graph.task_losses]
        return task_jacobian(dataclasses.replace(graph, task_losses=log_losses))

    def update(self, jacobian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._step += 1
        beta = self.beta / self._step**self.beta_sigma
        if self._average is None or self._average.shape != jacobian.shape:
            self._average = torch.zeros_like(jacobian)
        self._average = jacobian + beta * (self._average - jacobian)
        norms = self._average.norm(dim=1)
        # On the device: no host sync.
        scale = norms.max() / (norms + 1e-8)
        return scale @ self._average, scale
