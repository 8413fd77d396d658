from __future__ import annotations

import torch

from runners.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("equal")
class Equal(LossWeighting):
    """Equal weighting: minimise sum_t L_t."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(losses)
