from __future__ import annotations

from typing import ClassVar

import torch

from runners.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("gls")
class GLS(LossWeighting):
    """Geometric Loss Strategy (Chennupati et al., "MultiNet++", CVPR Workshops 2019).

    Minimises the geometric mean of the task losses,
        L = (prod_t L_t)^(1/T),
    whose gradient is sum_t w_t grad L_t with w_t = L / (T L_t): a task's
    weight falls as its loss grows, so no task's scale dominates.  The
    weights are computed from the detached losses, so one backward pass of
    sum_t w_t L_t gives exactly the gradient of L.  No hyper-parameters.
    Our implementation (LibMTL's GLS minimises the same L).
    """

    graph_safe: ClassVar[bool] = True

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        detached = losses.detach()
        geometric_mean = detached.log().mean().exp()
        return geometric_mean / (len(detached) * detached)
