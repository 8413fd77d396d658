from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("stch")
class STCH(LossWeighting):
    """Smooth Tchebycheff scalarisation (Lin, Zhang, Yang, Liu, Wang & Zhang, ICML 2024).

    The paper's scalarisation (its Eq. 9) of the task losses f_t with the
    preference lambda on the simplex and the ideal point z*:
        g(x) = mu log sum_t exp(lambda_t (f_t(x) - z*_t) / mu),
    a smooth upper bound of the Tchebycheff max_t lambda_t (f_t - z*_t) that
    tends to it as mu -> 0.  Its gradient is sum_t w_t grad f_t with
        w_t = lambda_t softmax(lambda (f - z*) / mu)_t   (detached),
    which are the weights this method applies and reports.

    `variant`:
    - "paper" (default): the stateless formula above with uniform preference
      lambda_t = 1/T and z* = 0 (task losses are non-negative), as torchjd's
      `scalarization.STCH`.
    - "authors-mtl": the authors' multi-task code (STCH_MTL, copied by
      LibMTL): for the first `warmup_epochs` + 1 epochs minimise
      sum_t log L_t; the mean training losses of the last of these epochs
      become the nadir point n; afterwards minimise
          T mu log sum_t exp(log(L_t / n_t) / mu),
      i.e. w_t = T softmax(log(L / n) / mu)_t / L_t.  The nadir is that
      epoch's mean loss, which is exactly the mean over its batches that
      LibMTL accumulates.
    Defaults: mu = 1 and 4 warm-up epochs, those of the authors' MTL code
    (the paper evaluates mu in {0.01, 0.1, 0.5, 1} and finds none best
    everywhere).  Our implementation.
    """

    _nadir: torch.Tensor | None

    def __init__(
        self,
        num_tasks: int,
        *,
        mu: Annotated[float, Field(gt=0.0, le=100.0)] = 1.0,
        variant: Literal["paper", "authors-mtl"] = "paper",
        warmup_epochs: Annotated[int, Field(ge=0, le=1000)] = 4,
    ) -> None:
        super().__init__(num_tasks)
        self.mu = mu
        self.variant = variant
        self.warmup_epochs = warmup_epochs
        self._epoch = 0  # epochs completed, for the authors' warm-up
        self.register_buffer("_nadir", None)

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        losses = losses.detach()
        if self.variant == "paper":
            preference = 1.0 / self.num_tasks
            return preference * torch.softmax(preference * losses / self.mu, dim=0)
        if self._nadir is None:  # warm-up: the sum of log-losses
            return 1.0 / losses
        scaled = torch.log(losses / self._nadir) / self.mu
        return self.num_tasks * torch.softmax(scaled, dim=0) / losses

    def end_epoch(self, mean_losses: torch.Tensor) -> None:
        if self.variant == "authors-mtl" and self._epoch == self.warmup_epochs:
            self._nadir = mean_losses.detach().clone()
        self._epoch += 1
