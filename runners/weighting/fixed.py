from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, LossWeighting

TaskWeight = Annotated[float, Field(ge=0.0, le=1000.0)]


@WEIGHTINGS.register("fixed")
class Fixed(LossWeighting):
    """Fixed task weights: minimise sum_t w_t L_t with w given by the spec.

    `task_weights` lists one weight per task, in the benchmark's task order
    (synthetic-scenes: segmentation, depth, normal); a spec cannot know the
    number of tasks when it is validated, so the length is checked when the
    method is built for a benchmark.  Omitted: every weight is 1 (equal
    weighting).  Hand-tuned fixed weights are the classic baseline of the
    MTL literature (e.g. Kendall et al. 2018's grid search); no paper default.
    """

    graph_safe: ClassVar[bool] = True

    _weights: torch.Tensor

    def __init__(
        self,
        num_tasks: int,
        *,
        task_weights: Annotated[list[TaskWeight], Field(min_length=1, max_length=64)] | None = None,
    ) -> None:
        super().__init__(num_tasks)
        if task_weights is not None and len(task_weights) != num_tasks:
            raise ValueError(
                f"weighting fixed: task_weights has {len(task_weights)} entries"
                f" but the benchmark has {num_tasks} tasks"
            )
        if task_weights is not None and sum(task_weights) <= 0:
            raise ValueError(f"weighting fixed: task_weights must not all be 0, got {task_weights}")
        self.task_weights = None if task_weights is None else list(task_weights)
        values = torch.ones(num_tasks) if task_weights is None else torch.tensor(task_weights)
        self.register_buffer("_weights", values.float())

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        return self._weights.to(losses.dtype)
