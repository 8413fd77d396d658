from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS
from runners.weighting.double_sampling import DoubleSampling
from runners.weighting.moco import project_onto_simplex


@WEIGHTINGS.register("modo")
class MoDo(DoubleSampling):
    """MoDo, multi-objective gradient with double sampling (Chen et al., NeurIPS 2023).

    Lisha Chen, Heshan Fernando, Yiming Ying & Tianyi Chen, "Three-Way Trade-Off in
    Multi-Objective Learning: Optimization, Generalization and Conflict-Avoidance".
    One projected-gradient step per
    training step on the MGDA weights lambda (from 1/T), with the
    subproblem's gradient estimated without bias from two independent
    batches (`DoubleSampling`: A = J_xi J_xi'^T),
        lambda <- P(lambda - gamma (A lambda + rho lambda)),
    and the update lambda @ J_zeta on the step's own batch; P is the
    projection onto the simplex.  Defaults gamma = 1e-3, rho = 0.1: LibMTL's,
    from the authors' code.  Reported weights: lambda.  Our implementation;
    torchjd's `MoDoWeighting` is the reference in the tests.
    """

    def __init__(
        self,
        num_tasks: int,
        *,
        gamma: Annotated[float, Field(gt=0.0, le=100.0)] = 1e-3,
        rho: Annotated[float, Field(ge=0.0, le=100.0)] = 0.1,
    ) -> None:
        super().__init__(num_tasks)
        self.gamma = gamma
        self.rho = rho
        # On the CPU with the solver, whatever the device: not a buffer.
        self._lambda: torch.Tensor | None = None

    def weights_from_cross(self, cross: torch.Tensor) -> torch.Tensor:
        num_tasks = cross.shape[0]
        if self._lambda is None:
            self._lambda = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
        step = cross @ self._lambda + self.rho * self._lambda
        self._lambda = project_onto_simplex(self._lambda - self.gamma * step)
        return self._lambda
