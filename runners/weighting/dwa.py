from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("dwa")
class DWA(LossWeighting):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019).

    With r_t = L_t(e-1) / L_t(e-2), the ratio of a task's mean training loss
    over the last two epochs, the weights of epoch e are
        w_t = T * softmax(r / temperature)_t,
    and 1 for the first two epochs.  Paper default: temperature 2.
    """

    graph_safe: ClassVar[bool] = True
    _current: torch.Tensor

    def __init__(
        self,
        num_tasks: int,
        *,
        temperature: Annotated[float, Field(gt=0.0, le=100.0)] = 2.0,
    ) -> None:
        super().__init__(num_tasks)
        self.temperature = temperature
        self._history: list[torch.Tensor] = []
        self.register_buffer("_current", torch.ones(num_tasks))

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        return self._current

    def end_epoch(self, mean_losses: torch.Tensor) -> None:
        self._history = [*self._history[-1:], mean_losses.detach().clone()]
        if len(self._history) == 2:
            ratio = self._history[1] / self._history[0]
            # In place: a CUDA graph of the step reads this tensor (`graph_safe`).
            self._current.copy_(self.num_tasks * torch.softmax(ratio / self.temperature, dim=0))
