from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torch import nn

from runners.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("uncertainty")
class Uncertainty(LossWeighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    Learns s_t = log sigma_t^2 with the model and minimises
        sum_t exp(-s_t) L_t + s_t,
    the form used by LibMTL and most reimplementations (the paper's 1/2
    factors only rescale the learning rate of s).  Weights: exp(-s_t).
    """

    graph_safe: ClassVar[bool] = True

    def __init__(
        self,
        num_tasks: int,
        *,
        initial_log_variance: Annotated[float, Field(ge=-10.0, le=10.0)] = 0.0,
    ) -> None:
        super().__init__(num_tasks)
        self.initial_log_variance = initial_log_variance
        self.log_variance = nn.Parameter(torch.full((num_tasks,), initial_log_variance))

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.log_variance)

    def regulariser(self) -> torch.Tensor:
        return self.log_variance.sum()
