from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field

from runners.weighting.base import WEIGHTINGS, LossWeighting


@WEIGHTINGS.register("famo")
class FAMO(LossWeighting):
    """FAMO, "Fast Adaptive Multitask Optimization" (Liu, Liu, Jin, Stone & Liu, NeurIPS 2023).

    Keeps logits xi (initially 0) and z = softmax(xi).  Each step minimises
    sum_t z_t log L_t / c with c = sum_t z_t / L_t (the authors' code; task
    minimum losses taken as 0), i.e. the task weights
        w_t = z_t / (c L_t),   sum_t w_t = 1,
    so every loss decreases at a rate steered by z.  After the step, the
    logits move with the observed decrease of the log-losses,
        delta_t = log L_t(before) - log L_t(after),
        xi <- Adam step on grad = J_softmax(xi)^T delta, lr w_lr, weight decay gamma,
    which raises the weight of tasks whose loss fell less.

    The authors' trainer measures L(after) with a second forward pass of
    the same batch after the optimiser step.  A method here sees only its
    own step's losses, so L(after) is the next step's loss, on the next
    batch: no extra forward pass, at the price of batch-to-batch noise in
    delta (an approximation, as in implementations without that pass).
    The authors' gradient clipping (max_norm 1.0) is called before
    `loss.backward()` in their code and so has no effect; it is left out.
    Defaults are those of the authors' code: w_lr = 0.025, gamma = 0.01.
    Our implementation; the logits' optimiser is torch's Adam.
    """

    _logits: torch.Tensor

    def __init__(
        self,
        num_tasks: int,
        *,
        w_lr: Annotated[float, Field(gt=0.0, le=10.0)] = 0.025,
        gamma: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01,
    ) -> None:
        super().__init__(num_tasks)
        self.w_lr = w_lr
        self.gamma = gamma
        # A buffer, not a Parameter: the run's optimiser must not step the logits.
        self.register_buffer("_logits", torch.zeros(num_tasks))
        self._previous: torch.Tensor | None = None
        self._optimizer: torch.optim.Adam | None = None

    @property
    def logits(self) -> torch.Tensor:
        return self._logits

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        current = losses.detach() + 1e-8
        if self._previous is not None:
            self._update_logits(self._previous.log() - current.log())
        self._previous = current
        z = torch.softmax(self.logits, dim=0).to(current.dtype)
        c = (z / current).sum()
        return z / (c * current)

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        # The logits' Adam is built lazily, so a fresh method has none to load into.
        saved = state[""]["attributes"].get("_optimizer")
        rest = {**state[""], "attributes": {**state[""]["attributes"], "_optimizer": None}}
        super().load_checkpoint_state({**state, "": rest})
        if saved is not None:
            self._optimizer = torch.optim.Adam([self.logits], lr=self.w_lr, weight_decay=self.gamma)
            self._optimizer.load_state_dict(saved["optimizer"])

    def _update_logits(self, delta: torch.Tensor) -> None:
        logits = self.logits
        # Built lazily: `.to(device)` replaces the buffer after construction.
        if self._optimizer is None or self._optimizer.param_groups[0]["params"][0] is not logits:
            self._optimizer = torch.optim.Adam([logits], lr=self.w_lr, weight_decay=self.gamma)
        z = torch.softmax(logits, dim=0)
        # Jacobian of softmax (diag z - z z^T) applied to delta.
        logits.grad = z * (delta.to(z.dtype) - z @ delta.to(z.dtype))
        self._optimizer.step()
        logits.grad = None
