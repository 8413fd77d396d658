from __future__ import annotations

import torch

from runners.weighting.base import WEIGHTINGS, LossWeighting, method_generator


@WEIGHTINGS.register("rlw")
class RLW(LossWeighting):
    """Random Loss Weighting (Lin et al., TMLR 2022).

    "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task Learning".

    At every step, draws lambda ~ N(0, I_T) and weighs the losses with
        w = softmax(lambda),
    so the weights sum to 1 (the paper's normal-distribution variant, as in
    LibMTL and the Nash-MTL code; the update is on the scale of the mean
    loss).  The draws come from a generator seeded by the platform
    (`METHOD_SEED`, not the spec), so a run is
    reproducible and the training loop's random stream is untouched.
    Our implementation.
    """

    def __init__(self, num_tasks: int):
        super().__init__(num_tasks)
        self._generator = method_generator()

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        draw = torch.randn(self.num_tasks, generator=self._generator)
        return torch.softmax(draw, dim=0).to(losses.device, losses.dtype)
