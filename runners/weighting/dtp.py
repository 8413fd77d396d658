from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("dtp")
class DTP(LossWeighting):
    """Dynamic Task Prioritization, task level (Guo et al., ECCV 2018).

    Each task has a key performance indicator kappa_t in (0, 1], smoothed
    over steps, kappa_bar <- alpha kappa + (1 - alpha) kappa_bar, and the
    focal-loss-like weight
        w_t = -(1 - kappa_bar_t)^gamma log(kappa_bar_t),
    so that tasks that perform badly (low KPI) get high priority.

    The KPI: the paper uses each task's own metric (accuracy, average
    precision); the training loop gives a method only the losses, so we use
    kappa_t = exp(-L_t) from the step's training loss.  For a cross-entropy
    loss that is the geometric mean of the probability given to the right
    class, an accuracy-like number; for the regression losses (L1 depth,
    cosine normals) it is only a monotone proxy: 1 at zero loss, falling as
    the loss grows.  The paper's example-level prioritisation (a focal loss
    inside each task) is not included: it changes the task losses, not their
    weights.  Defaults: gamma = 1 (focusing), alpha = 0.9 (smoothing).
    Our implementation.
    """

    graph_safe: ClassVar[bool] = True

    _kpi: torch.Tensor

    def __init__(
        self,
        num_tasks: int,
        *,
        gamma: Annotated[float, Field(ge=0.0, le=10.0)] = 1.0,
        alpha: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9,
    ) -> None:
        super().__init__(num_tasks)
        self.gamma = gamma
        self.alpha = alpha
        self.register_buffer("_kpi", torch.full((num_tasks,), float("nan")))

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        kpi = torch.exp(-losses.detach()).clamp(min=1e-12)
        previous = self._kpi.to(kpi.dtype)
        # The first step has no history: its KPI is the smoothed value.  (No host sync.)
        smoothed = torch.where(
            previous.isnan(), kpi, self.alpha * kpi + (1 - self.alpha) * previous
        )
        # In place: a CUDA graph of the step reads and writes this tensor (`graph_safe`).
        self._kpi.copy_(smoothed)
        return -((1 - smoothed) ** self.gamma) * torch.log(smoothed)
