from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torchjd.aggregation import GradDrop as TorchJDGradDrop

from runners.weighting.base import WEIGHTINGS, GradientMethod, global_rng_from, method_generator


@WEIGHTINGS.register("graddrop")
class GradDrop(GradientMethod):
    """Gradient Sign Dropout, "Just Pick a Sign" (Chen et al., NeurIPS 2020).

    For every coordinate k of the shared parameters, the positive sign
    purity
        P_k = (1 + sum_t g_tk / sum_t |g_tk|) / 2
    is the probability of keeping the tasks' positive components there
    (else the negative ones): with U_k ~ Uniform(0, 1), task t's component
    is kept if (P_k > U_k and g_tk > 0) or (P_k < U_k and g_tk < 0), and the
    update is sum_t (leak + (1 - leak) M_t) * g_t.  Applied to the
    per-task gradients of all shared parameters (the paper applies it at
    one layer, usually the shared representation's activations).  Default
    leak 0 (the paper's).  Implementation: torchjd's `GradDrop` (Algorithm
    1, lines 10-15); its uniform draws come from torch's global RNG, which
    we seed from a generator seeded by the platform
    (`METHOD_SEED`, not the spec) and restore afterwards.

    The update masks coordinates, so it is not a combination of the task
    gradients; the weights reported are those of the combination closest
    to it, w = argmin |w @ J - d| (the all-ones vector when nothing is
    dropped and J has full row rank).
    """

    properties: ClassVar[frozenset[str]] = frozenset({"homogeneous"})

    def __init__(
        self,
        num_tasks: int,
        *,
        leak: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0,
    ) -> None:
        super().__init__(num_tasks)
        self.leak = leak
        self._generator = method_generator()
        self._solver = TorchJDGradDrop()

    def update(self, jacobian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._solver.leak = torch.full(
            (self.num_tasks,), self.leak, device=jacobian.device, dtype=jacobian.dtype
        )
        with global_rng_from(self._generator, jacobian.device):
            direction: torch.Tensor = self._solver(jacobian)
        # One host copy of (T, T) and (T,) for the reported weights.
        gram = (jacobian @ jacobian.T).to("cpu", torch.float64)
        projections = (jacobian @ direction).to("cpu", torch.float64)
        weights = torch.linalg.pinv(gram) @ projections
        return direction, weights.to(jacobian.device, jacobian.dtype)
