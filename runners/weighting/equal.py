from __future__ import annotations

from typing import ClassVar

import torch

from runners.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("equal")
class Equal(LossWeighting):
    """Equal weighting: minimise sum_t L_t."""

    graph_safe: ClassVar[bool] = True

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(losses)
