from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torchjd.aggregation import GradVacWeighting

from runners.weighting.base import WEIGHTINGS, GramAggregation, global_rng_from, method_generator


@WEIGHTINGS.register("gradvac")
class GradVac(GramAggregation):
    """Gradient Vaccine (Wang, Tsvetkov, Firat & Cao, ICLR 2021).

    For each task i and each other task j in random order, with phi the
    cosine similarity of the (already corrected) g_i and the original g_j
    and phi_hat_ij a target kept as an exponential moving average:
    if phi < phi_hat_ij, g_j is added to g_i with the coefficient
        |g_i| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / (|g_j| sqrt(1 - phi_hat^2)),
    which raises the similarity to exactly phi_hat_ij; then
    phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi.  The update is the sum
    of the corrected gradients (the scale of equal weighting's sum).
    Targets start at 0, so at first only conflicting pairs are corrected,
    as PCGrad would; pairs more similar than their target are left alone.
    One group: the whole shared parameter vector (the paper also applies it
    per layer).  Default beta = 0.5, as in torchjd and LibMTL.
    Implementation: torchjd's `GradVacWeighting` on the Gram matrix on the
    CPU; its random orders come from torch's global RNG, which we seed from
    a generator seeded by the platform
    (`METHOD_SEED`, not the spec) and restore afterwards.
    """

    properties: ClassVar[frozenset[str]] = frozenset({"homogeneous"})

    def __init__(
        self,
        num_tasks: int,
        *,
        beta: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5,
    ) -> None:
        super().__init__(num_tasks)
        self.beta = beta
        self._generator = method_generator()
        self._solver = GradVacWeighting(beta=beta)

    def weights_from_gram(self, gram: torch.Tensor) -> torch.Tensor:
        with global_rng_from(self._generator, gram.device):
            weights: torch.Tensor = self._solver(gram)
        return weights
