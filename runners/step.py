"""One training step, and how it runs on its device: eagerly, or replayed from CUDA graphs.

A step is the forward pass, the task losses, the weighting method's backward
and the optimiser's step.  On the CPU it runs eagerly, as it always has.  On
CUDA a small model's step is launch-bound: a 64x64 batch of 32 keeps an
H100 busy for a fraction of the 8.5 ms that launching its few hundred kernels
takes.  So where the step allows it, it is captured once in a CUDA graph and
replayed (`GraphPlan`):

- "whole": the method's `backward` never waits for the device and keeps its
  state in tensors updated in place (`Weighting.graph_safe`): one graph, no
  host synchronisation per step.
- "split": a `GramAggregation` (a solver on the T x T Gram matrix): one graph
  for the forward pass, the Jacobian J and G = J J^T; G is copied to the host
  (the step's one synchronisation) and solved there; a second graph applies
  w @ J and the optimiser's step.
- "eager": everything else (a method that draws from a CPU generator or
  reads a value on the host in the middle of its backward, a data-parallel
  job, an optimiser that cannot be captured) runs as on the CPU.  So does a
  batch whose shapes differ from the captured one (an epoch's last, short
  batch), and any step whose capture fails (the reason is kept in
  `graph_failure` and printed once).

Determinism: on the CPU, the same (spec, seed, thread count) gives the same
metrics, bit for bit, with or without this module.  On CUDA the same (spec,
seed, device, software) gives the same metrics: the graphs replay the same
kernels on the same addresses each step; cuDNN is limited to deterministic
algorithms (`deterministic_cuda`); bilinear upsampling runs as matrix
products (`runners.models.resize`) because F.interpolate's CUDA backward adds
with atomics.  The capture needs a few warm-up steps (lazy allocations,
library handles); they run on a copy of the state, which is then restored, so
every real step, the first included, is a replay, and a run resumed from a
checkpoint is the same as one that never stopped.  (Cross-entropy's CUDA
forward also sums with atomics: its loss value may differ in the last bits
between runs, not its gradient; methods that read the loss values, such as
uncertainty or DWA weighting, inherit that.)
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import torch
from torch import nn

from runners.benchmarks.base import Batch
from runners.models.base import MultiTaskModel
from runners.multi_input import task_outputs
from runners.tasks import Task
from runners.weighting.base import (
    GradientMethod,
    GramAggregation,
    StepGraph,
    Weighting,
    set_flat_grad,
)

GraphPlan = Literal["eager", "whole", "split"]
# Eager steps before a capture: they allocate the optimiser's state, cuBLAS and
# cuDNN workspaces and the interpolation matrices outside the graph's memory.
WARMUP_STEPS = 2


class GradientAverager(Protocol):
    """The part of `runners.train.DataParallel` a step uses."""

    def average(self, tensors: list[torch.Tensor]) -> None: ...


def graph_plan(
    weighting: Weighting,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    data_parallel: bool = False,
) -> tuple[GraphPlan, str]:
    """How a step of `weighting` runs on `device`, and why."""
    if device.type != "cuda":
        return "eager", f"{device.type}: CUDA graphs are for CUDA devices"
    if data_parallel:
        return "eager", "data-parallel: gradients are averaged across workers inside the step"
    if weighting.samples_per_step > 1:
        return "eager", f"{weighting.samples_per_step} batches per step (double sampling)"
    if weighting.meta_split is not None:
        return "eager", "a bilevel method: look-ahead steps on a meta batch"
    if not isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        # SGD reads its learning rate on the host; Adam and AdamW run capturable.
        return "eager", f"the {type(optimizer).__name__} optimiser's step cannot be captured"
    if weighting.graph_safe:
        return "whole", "no host synchronisation in the step"
    if isinstance(weighting, GramAggregation) and _is_plain_gram_aggregation(type(weighting)):
        return "split", "one host synchronisation per step: the Gram matrix, for the solver"
    return "eager", f"{type(weighting).__name__} needs the host inside its backward"


def _is_plain_gram_aggregation(method: type[GramAggregation]) -> bool:
    """Its step is task_jacobian -> weights_from_gram -> w @ J, which "split" captures around."""
    return (
        method.jacobian is GradientMethod.jacobian
        and method.update is GramAggregation.update
        and method.backward is GradientMethod.backward
        and method.aggregate is GramAggregation.aggregate
    )


def deterministic_cuda() -> None:
    """Deterministic cuDNN algorithms, chosen without benchmarking (process-wide)."""
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> int | None:
    """Bytes of device memory allocated at the peak since `reset_peak_memory`; None off CUDA."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.max_memory_allocated(device))


class TrainingStep:
    """`step(batch) -> (losses, weights)`: one optimiser step; two (T,) tensors on the device.

    `graphs`: capture CUDA graphs where the plan allows (default: on CUDA);
    False: always eager.  `batched_jacobian`: how gradient methods push the
    task cotangents through the encoder (`StepGraph.batched_jacobian`; None:
    the device's default).  `multi_input`: each task's loss reads only its own
    rows of the batch (`runners.multi_input`).
    """

    def __init__(
        self,
        model: MultiTaskModel,
        weighting: Weighting,
        optimizer: torch.optim.Optimizer,
        tasks: Sequence[Task],
        device: torch.device | str,
        *,
        parallel: GradientAverager | None = None,
        graphs: bool = True,
        batched_jacobian: bool | None = None,
        multi_input: bool = False,
    ) -> None:
        self.model, self.weighting, self.optimizer = model, weighting, optimizer
        self.multi_input = multi_input
        self.tasks = tuple(tasks)
        self.device = torch.device(device)
        self.parallel = parallel
        self.batched_jacobian = batched_jacobian
        self.shared = model.shared_parameters()
        self.own = [model.task_parameters(t.name) for t in self.tasks]
        self.trained = [*model.parameters(), *weighting.parameters()]
        plan, self.plan_reason = graph_plan(
            weighting, optimizer, self.device, data_parallel=parallel is not None
        )
        self.plan: GraphPlan = plan if graphs else "eager"
        if not graphs and plan != "eager":
            self.plan_reason = "CUDA graphs turned off"
        self.graph_failure: str | None = None
        self.replays = 0
        self._captured: _Captured | None = None
        if self.device.type == "cuda":
            deterministic_cuda()
        prepare_optimizer(optimizer, self.device, capturable=self.plan != "eager")

    def __call__(
        self, batch: Batch, samples: Sequence[Batch] = (), meta: Batch | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`samples`: the further batches of a method with `samples_per_step` > 1;
        `meta`: the meta batch of a method with a `meta_split` (default: `batch` itself)."""
        if self.plan == "eager" or samples or meta is not None:
            return self.eager(batch, samples, meta)
        if self._captured is None:
            self._capture(batch)
            if self._captured is None:  # the capture failed: eager from now on
                return self.eager(batch)
        captured = self._captured
        if not captured.accepts(batch):
            return self.eager(batch)
        self.replays += 1
        return captured.replay(batch, self.weighting)

    def eager(
        self, batch: Batch, samples: Sequence[Batch] = (), meta: Batch | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The step as the training loop has always run it."""
        graph = self._forward(batch)
        if samples:
            graph.samples = tuple(self._forward(sample) for sample in samples)
        if self.weighting.meta_split is not None:
            graph.look_ahead = ModelFunction(self, batch, batch if meta is None else meta)
        self.optimizer.zero_grad(set_to_none=True)
        weights = self.weighting.backward(graph)
        if self.parallel is not None:
            self.parallel.average([p.grad for p in self.trained if p.grad is not None])
        self.optimizer.step()
        return graph.losses.detach(), weights

    def _forward(self, batch: Batch) -> StepGraph:
        representation, outputs = self.model(batch["image"])
        return StepGraph(
            self.task_losses(outputs, batch),
            representation,
            self.shared,
            self.own,
            batched_jacobian=self.batched_jacobian,
        )

    def task_losses(self, outputs: dict[str, torch.Tensor], batch: Batch) -> list[torch.Tensor]:
        """One training loss per task of the model's `outputs` for `batch`."""
        # Multi-input: each task's loss reads only its own rows (`runners.multi_input`).
        seen = task_outputs(outputs, batch, self.tasks, multi_input=self.multi_input)
        # The model adds auxiliary predictions' losses (deep supervision) if it has any.
        return [
            self.model.training_loss(t, own, batch[t.name])
            for t, own in zip(self.tasks, seen, strict=True)
        ]

    def _capture(self, batch: Batch) -> None:
        """Warm up on a copy of the state, restore it, capture; on failure fall back to eager."""
        saved = State(self.model, self.weighting, self.optimizer, self.device)
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self.eager(batch)
            torch.cuda.current_stream(self.device).wait_stream(side)
            saved.restore()
            self.optimizer.zero_grad(set_to_none=True)
            static = {k: v.clone() for k, v in batch.items()}
            if self.plan == "whole":
                self._captured = self._capture_whole(static)
            else:
                self._captured = self._capture_split(static)
        except Exception as e:  # any failure to capture: the step stays eager, as on the CPU
            self._captured = None
            self.graph_failure = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            self.plan_reason = f"capture failed ({self.graph_failure}); eager"
            self.plan = "eager"
            print(
                f"mtlb: CUDA graph capture of the {type(self.weighting).__name__} step failed,"
                f" running it eagerly: {self.graph_failure}",
                file=sys.stderr,
            )
            saved.restore()
            self.optimizer.zero_grad(set_to_none=True)

    def _capture_whole(self, static: Batch) -> _Captured:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            losses, weights = self.eager(static)
        return _Captured(static, [graph], losses, weights, self._grads())

    def _capture_split(self, static: Batch) -> _Captured:
        assert isinstance(self.weighting, GramAggregation)
        before = torch.cuda.CUDAGraph()
        with torch.cuda.graph(before):
            losses, jacobian, gram = self.jacobian_part(static)
        weights = torch.zeros(len(self.tasks), device=self.device, dtype=jacobian.dtype)
        after = torch.cuda.CUDAGraph()
        with torch.cuda.graph(after, pool=before.pool()):
            self.update_part(weights, jacobian)
        return _Captured(static, [before, after], losses, weights, self._grads(), gram=gram)

    def jacobian_part(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A "split" step before the host: the losses, J (task gradients accumulated) and J J^T.

        With the host's `weights_from_gram` between them, `jacobian_part` and
        `update_part` are the eager step of a `GramAggregation`, op for op.
        """
        assert isinstance(self.weighting, GramAggregation)
        self.optimizer.zero_grad(set_to_none=True)
        step_graph = self._forward(batch)
        jacobian = self.weighting.jacobian(step_graph)
        return step_graph.losses.detach(), jacobian, jacobian @ jacobian.T

    def update_part(self, weights: torch.Tensor, jacobian: torch.Tensor) -> None:
        """A "split" step after the host: the update w @ J and the optimiser's step."""
        set_flat_grad(self.shared, weights @ jacobian)
        self.optimizer.step()

    def _grads(self) -> list[torch.Tensor]:
        # Held so that the graphs' gradient memory stays theirs even after an
        # eager step (a short batch) has set `.grad` to other tensors.
        return [p.grad for p in self.trained if p.grad is not None]


class ModelFunction:
    """A step's `LookAhead`: the model's task losses at other parameter values.

    Runs the model through `torch.func.functional_call` with the given values
    in place of its parameters and with copies of its buffers, so that a
    look-ahead leaves the model, its batch-norm statistics included, as it was.
    """

    def __init__(self, step: TrainingStep, batch: Batch, meta: Batch) -> None:
        named = [(n, p) for n, p in step.model.named_parameters() if p.requires_grad]
        self._names = [n for n, _ in named]
        self.parameters = [p for _, p in named]
        self.learning_rate = float(step.optimizer.param_groups[0]["lr"])
        self._step = step
        self._batches = {"train": batch, "meta": meta}

    def losses(
        self, values: Sequence[torch.Tensor], batch: Literal["train", "meta"]
    ) -> torch.Tensor:
        data = self._batches[batch]
        model = self._step.model
        state: dict[str, torch.Tensor] = {n: b.clone() for n, b in model.named_buffers()}
        state.update(zip(self._names, values, strict=True))
        _, outputs = torch.func.functional_call(model, state, (data["image"],))
        return torch.stack(self._step.task_losses(outputs, data))


class _Captured:
    """Captured graphs with their static inputs and outputs."""

    def __init__(
        self,
        static: Batch,
        graphs: list[torch.cuda.CUDAGraph],
        losses: torch.Tensor,
        weights: torch.Tensor,
        grads: list[torch.Tensor],
        *,
        gram: torch.Tensor | None = None,
    ) -> None:
        self.static, self.graphs = static, graphs
        self.losses, self.weights, self.gram = losses, weights, gram
        self.grads = grads
        self.shapes = {k: (v.shape, v.dtype) for k, v in static.items()}

    def accepts(self, batch: Batch) -> bool:
        return {k: (v.shape, v.dtype) for k, v in batch.items()} == self.shapes

    def replay(self, batch: Batch, weighting: Weighting) -> tuple[torch.Tensor, torch.Tensor]:
        for name, value in batch.items():
            self.static[name].copy_(value)
        self.graphs[0].replay()
        if self.gram is not None:
            assert isinstance(weighting, GramAggregation)
            # The step's one host synchronisation: the (T, T) Gram matrix, for the solver.
            weights = weighting.weights_from_gram(self.gram.to("cpu", torch.float64))
            self.weights.copy_(weights.to(self.weights.dtype))
            self.graphs[1].replay()
        return self.losses, self.weights


class State:
    """A copy of everything a step changes, to undo the warm-up steps before a capture."""

    def __init__(
        self,
        model: nn.Module,
        weighting: Weighting,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
    ) -> None:
        self.model, self.weighting, self.optimizer, self.device = (
            model,
            weighting,
            optimizer,
            device,
        )
        self.model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.weighting_state = copy.deepcopy(weighting.checkpoint_state())
        self.optimizer_state = {
            id(t): t.detach().clone()
            for state in optimizer.state.values()
            for t in state.values()
            if isinstance(t, torch.Tensor)
        }
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        """Put the state back in place (same tensors, so the optimiser's references hold)."""
        with torch.no_grad():
            for name, value in self.model.state_dict().items():
                value.copy_(self.model_state[name])
            for state in self.optimizer.state.values():
                for t in state.values():
                    if not isinstance(t, torch.Tensor):
                        continue
                    saved = self.optimizer_state.get(id(t))
                    # Created by the warm-up: Adam's fresh state is all zeros (step 0).
                    t.copy_(saved) if saved is not None else t.zero_()
        self.weighting.load_checkpoint_state(copy.deepcopy(self.weighting_state))
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.device)


def prepare_optimizer(
    optimizer: torch.optim.Optimizer, device: torch.device, *, capturable: bool
) -> None:
    """Make the optimiser capturable (state and learning rate on the device), or undo it.

    A captured step reads the learning rate from a tensor, so that a
    scheduler's update (written into it in place) reaches the replays.  The
    reverse serves a checkpoint written by a captured run and resumed eagerly.
    """
    for group in optimizer.param_groups:
        if "capturable" not in group:
            continue
        group["capturable"] = capturable
        lr = group["lr"]
        if capturable and not isinstance(lr, torch.Tensor):
            group["lr"] = torch.tensor(float(lr), device=device)
        elif not capturable and isinstance(lr, torch.Tensor):
            group["lr"] = float(lr)
        if capturable:
            # A capturable Adam keeps its step count on the device (a resumed
            # eager checkpoint has it on the CPU).
            for p in group["params"]:
                state = optimizer.state.get(p, {})
                if isinstance(state.get("step"), torch.Tensor):
                    state["step"] = state["step"].to(device, torch.float32)


def describe(step: TrainingStep) -> dict[str, Any]:
    """What ran, for logs and benchmarks: the plan, why, and how many steps were replays."""
    return {
        "plan": step.plan,
        "reason": step.plan_reason,
        "replays": step.replays,
        "graph_failure": step.graph_failure,
    }
