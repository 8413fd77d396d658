"""The interface of weighting and gradient methods.

A method receives one training step's graph (the per-task losses, the shared
representation and which parameters belong to whom) and fills the `.grad` of
every parameter; it returns the task weights it applied, for the run's curves.
The training loop calls `backward` and nothing else, whatever the method.

Two families implement it:

- `LossWeighting`: a weight vector w from the losses; one backward pass of
  sum_t w_t L_t (+ a regulariser).
- `GradientMethod`: a function of the T x P matrix J of per-task gradients
  of the shared parameters (torchjd's "aggregator").  J is built in
  1 + (T-1)e equal-weighting steps rather than T: each task's loss is
  differentiated only with respect to the shared representation z and its
  own head (every head is traversed once in all), and then the T cotangents
  dL_t/dz are pushed through the encoder (on CUDA in one batched pass,
  `task_jacobian`).  Task-specific parameters receive their own task's
  plain gradient.  Most of them are a `GradientAggregation`, whose update is
  a combination w @ J of the task gradients; a `GramAggregation` computes w
  from the T x T Gram matrix J J^T alone, on the CPU.

A few methods need something in between (GradNorm, MGDA-UB: gradients at z
or at one layer only) and implement `Weighting.backward` themselves.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal
from typing import Protocol as Interface

import torch
from torch import nn

from runners.registry import Registry


class LookAhead(Interface):
    """The model as a function of its parameters: what a bilevel method needs of a step.

    A bilevel method (`runners.weighting.bilevel`) learns its task weights by
    looking ahead: it evaluates the task losses at parameter values other
    than the model's (theta - lr * g), on the step's training batch or on a
    meta batch (`Weighting.meta_split`), without changing the model.
    """

    @property
    def parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter of the model (shared and task-specific), in a fixed order."""
        ...

    @property
    def learning_rate(self) -> float:
        """The model optimiser's current learning rate (its first parameter group's)."""
        ...

    def losses(
        self, values: Sequence[torch.Tensor], batch: Literal["train", "meta"]
    ) -> torch.Tensor:
        """(T,) task losses with `parameters` replaced by `values` (same order and shapes).

        "train": the step's own batch; "meta": the step's meta batch.  The
        model's buffers (batch-norm statistics) are left as they were.
        """
        ...


@dataclass
class StepGraph:
    """What a method needs of one training step."""

    # One scalar per task, attached to the graph.  Kept apart, not stacked:
    # differentiating one element of a stacked vector would send zero
    # gradients through every other task's head on the way to z.
    task_losses: list[torch.Tensor]
    shared_representation: torch.Tensor | None
    shared_parameters: list[nn.Parameter]
    task_parameters: list[list[nn.Parameter]]  # in the order of `task_losses`
    # How `task_jacobian` pushes the T cotangents through the encoder: True, in one
    # batched (vmapped) backward pass; False, one pass per task; None, the device's
    # default (`batched_by_default`).
    batched_jacobian: bool | None = None
    # The graphs of further independent mini-batches of the same step, for a method
    # with `Weighting.samples_per_step` > 1 (the training loop draws them); empty
    # otherwise.  Same parameters, other data.
    samples: tuple[StepGraph, ...] = ()
    # For a method with a `meta_split` (a bilevel method): the model as a function of
    # its parameters, on the step's batch and its meta batch (`TrainingStep` builds it).
    # None otherwise, and outside the training loop.
    look_ahead: LookAhead | None = None

    @cached_property
    def losses(self) -> torch.Tensor:
        """(T,) the task losses as one vector."""
        return torch.stack(self.task_losses)


class Weighting(nn.Module, abc.ABC):
    """Base of every method; an nn.Module so that learnt weights are trained and saved."""

    # True for a method defined on the shared representation z (MGDA-UB): it
    # cannot run with an architecture whose `forward` returns no z.
    needs_representation: ClassVar[bool] = False
    # True when `backward` can be captured in a CUDA graph and replayed
    # (`runners.step`): it never waits for the device (no host copy, no
    # `.item()`, no draw from a CPU generator) and keeps every state it
    # changes in tensors updated in place, so that a replay reads and writes
    # the same memory as the captured step did.  A `GramAggregation` is
    # captured in two parts around its one host copy instead.
    graph_safe: ClassVar[bool] = False
    # Independent mini-batches one step needs: the step's own and
    # `samples_per_step - 1` more in `StepGraph.samples`, drawn by the training
    # loop (`runners.train.extra_batches`).  More than 1 for methods that estimate
    # a product of expectations without bias by double sampling (SDMGrad, MoDo).
    samples_per_step: ClassVar[int] = 1
    # Where a bilevel method's meta batches come from (None: the method takes none):
    # "validation", the protocol's validation part of the train split, which the model
    # then does not train on (`runners.splits.validation_split`); "train", the train
    # split itself, in another order.  The training loop draws one meta batch per step.
    meta_split: Literal["validation", "train"] | None = None

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks

    @abc.abstractmethod
    def backward(self, graph: StepGraph) -> torch.Tensor:
        """Fill the gradients; return the (T,) task weights applied, detached."""

    def end_epoch(self, mean_losses: torch.Tensor) -> None:
        """Called after each epoch with the (T,) mean training losses of that epoch."""

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything a resumed run needs of this method, as tensors and plain data.

        Per sub-module: its parameters, its buffers (None included: a lazily
        created buffer is state too) and its private attributes (`_name`:
        running averages, loss histories, generators, ...); public attributes
        are hyper-parameters, rebuilt by the constructor.  Loadable with
        `torch.load(weights_only=True)`.
        """
        return {
            path: {
                "parameters": dict(module._parameters),
                "buffers": dict(module._buffers),
                "attributes": {
                    name: _encode(value)
                    for name, value in vars(module).items()
                    if _is_state(name, value)
                },
            }
            for path, module in self.named_modules()
        }

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        """Restore what `checkpoint_state` saved, onto this method's current device."""
        modules = dict(self.named_modules())
        for path, saved in state.items():
            module = modules[path]
            with torch.no_grad():
                for name, value in saved["parameters"].items():
                    parameter = module._parameters[name]
                    if parameter is not None and value is not None:
                        parameter.copy_(value)
            for name, value in saved["buffers"].items():
                current = module._buffers.get(name)
                device = current.device if current is not None else None
                module._buffers[name] = None if value is None else value.to(device)
            for name, value in saved["attributes"].items():
                setattr(module, name, _decode(value, getattr(module, name, None), name))

    def extra_repr(self) -> str:
        hidden = {"num_tasks", "training"}
        public = {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in hidden}
        return ", ".join(f"{k}={v!r}" for k, v in public.items())

    def __repr__(self) -> str:
        # The method and its hyper-parameters; solver sub-modules (torchjd's) are internals.
        return f"{type(self).__name__}({self.extra_repr()})"

    def reseed(self, seed: int) -> None:
        """Seed a stochastic method's own generator with `seed` instead of `METHOD_SEED`.

        Only for specs stored while methods took a `seed` parameter (see
        `method_generator`): their reruns train as they did.
        """
        if not hasattr(self, "_generator"):
            raise ValueError(f"{type(self).__name__} draws no random numbers: it takes no seed")
        self._generator = method_generator(seed)


class LossWeighting(Weighting):
    @abc.abstractmethod
    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        """(T,) weights; may carry a graph to learnt parameters."""

    def regulariser(self) -> torch.Tensor | None:
        return None

    def backward(self, graph: StepGraph) -> torch.Tensor:
        weights = self.weights(graph.losses)
        total = (weights * graph.losses).sum()
        extra = self.regulariser()
        if extra is not None:
            total = total + extra
        total.backward()
        return weights.detach()


# Attributes every nn.Module has: not a method's state.
_MODULE_ATTRIBUTES = frozenset(vars(nn.Module()))


def _is_state(name: str, value: object) -> bool:
    return (
        name.startswith("_")
        and name not in _MODULE_ATTRIBUTES
        and not isinstance(value, nn.Module)
        and _encodable(value)
    )


def _encodable(value: object) -> bool:
    if value is None or isinstance(
        value, bool | int | float | str | torch.Tensor | torch.Generator | torch.dtype
    ):
        return True
    if isinstance(value, torch.optim.Optimizer):
        return True
    if isinstance(value, list | tuple):
        return all(_encodable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _encodable(v) for k, v in value.items())
    # Anything else (a solver's projector, a function) is configuration the constructor built.
    return False


def _encode(value: Any) -> Any:
    """A state attribute as data `torch.load(weights_only=True)` accepts (tagged where needed)."""
    if isinstance(value, torch.Generator):
        return {"generator": value.get_state()}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.optim.Optimizer):
        return {"optimizer": value.state_dict()}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"dict": {k: _encode(v) for k, v in value.items()}}
    return value


def _decode(value: Any, current: Any, name: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, None, name) for v in value]
    if not isinstance(value, dict):
        if isinstance(value, torch.Tensor) and isinstance(current, torch.Tensor):
            return value.to(current.device)
        return value
    if "generator" in value:
        generator = current if isinstance(current, torch.Generator) else torch.Generator()
        generator.set_state(value["generator"].cpu())
        return generator
    if "dtype" in value:
        dtype = getattr(torch, value["dtype"])
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"checkpoint attribute {name}: {value['dtype']!r} is not a dtype")
        return dtype
    if "tuple" in value:
        return tuple(_decode(v, None, name) for v in value["tuple"])
    if "dict" in value:
        return {k: _decode(v, None, name) for k, v in value["dict"].items()}
    if "optimizer" in value:
        if not isinstance(current, torch.optim.Optimizer):
            raise TypeError(
                f"checkpoint attribute {name}: an optimiser's state needs the optimiser"
                " built first; the method must override load_checkpoint_state"
            )
        current.load_state_dict(value["optimizer"])
        return current
    raise ValueError(f"checkpoint attribute {name}: unknown entry {sorted(value)}")


PROPERTIES: dict[str, str] = {
    "permutation_invariant": "permuting the tasks (the rows of J) permutes the weights alike"
    " and leaves the update unchanged",
    "homogeneous": "scaling every task gradient by c > 0 scales the update by c",
    "scale_invariant": "scaling every task gradient by c > 0 leaves the update unchanged",
    "non_conflicting": "the update has a non-negative inner product with every task gradient",
}
"""What a gradient method may promise, checked by tests/runners/test_weighting_properties.py.

Stochastic methods (a random order, a random mask) promise permutation
invariance only in distribution, so they do not declare it.
"""


class GradientMethod(Weighting):
    """A method that maps the per-task Jacobian J of the shared parameters to an update.

    `properties` lists the keys of `PROPERTIES` that the method promises, from
    its paper (or torchjd's documentation); the property tests hold it to them.
    """

    properties: ClassVar[frozenset[str]] = frozenset()

    def jacobian(self, graph: StepGraph) -> torch.Tensor:
        """(T, P) the matrix the method works on; the task losses' Jacobian by default."""
        return task_jacobian(graph)

    @abc.abstractmethod
    def update(self, jacobian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P,) the update of the shared parameters and the (T,) task weights to report."""

    def backward(self, graph: StepGraph) -> torch.Tensor:
        direction, weights = self.update(self.jacobian(graph))
        set_flat_grad(graph.shared_parameters, direction)
        return weights.detach()


class GradientAggregation(GradientMethod):
    @abc.abstractmethod
    def aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        """(T,) weights w such that the update direction is w @ jacobian.

        The update is a combination of the task gradients, so reporting w
        loses nothing.
        """

    def update(self, jacobian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.aggregate(jacobian)
        return weights @ jacobian, weights


class GramAggregation(GradientAggregation):
    """A `GradientAggregation` whose weights depend on J only through its Gram matrix G = J J^T.

    The solver runs on the CPU on the (T, T) float64 G: one device-to-host
    copy per step, whatever the solver does.  On a GPU the training step is
    then two CUDA graphs around that copy (`runners.step`): the forward
    pass, J and G; then w @ J and the optimiser's step.
    """

    @abc.abstractmethod
    def weights_from_gram(self, gram: torch.Tensor) -> torch.Tensor:
        """(T,) weights on the CPU from G, the (T, T) float64 Gram matrix of J, on the CPU."""

    def aggregate(self, jacobian: torch.Tensor) -> torch.Tensor:
        return self.weights_from_gram(gram_on_cpu(jacobian)).to(jacobian.device, jacobian.dtype)


def gram_on_cpu(matrix: torch.Tensor) -> torch.Tensor:
    """(T, T) float64 Gram matrix of the rows, on the CPU.

    The T x T Gram matrix is all most solvers need: computing it on the
    device and solving on the CPU costs one device-to-host copy per step
    instead of a synchronisation per solver iteration.
    """
    return (matrix @ matrix.T).to("cpu", torch.float64)


# The seed of every stochastic method's own generator (PCGrad's orders, GradDrop's and
# GradVac's draws, RLW's weights).  The platform fixes it, not the spec: a submitter who could
# choose it could pick the luckiest of many.  It was each method's default `seed` parameter,
# never mixed with the job's seed, so every stored result used it; deriving it from the job's
# seed would change those results and needs a new protocol version.
METHOD_SEED = 0
# Weighting methods whose specs once took `seed` (in [0, 2^31]); see `reseed`.
FORMERLY_SEEDED = frozenset({"pcgrad", "graddrop", "gradvac", "rlw"})


def method_generator(seed: int = METHOD_SEED) -> torch.Generator:
    """A stochastic method's own generator: its draws leave the training loop's stream alone."""
    return torch.Generator().manual_seed(seed)


@contextmanager
def global_rng_from(generator: torch.Generator, device: torch.device) -> Iterator[None]:
    """Seed torch's global RNG from `generator` for the duration, then restore it.

    For library code (torchjd) that draws from the global RNG: the draws
    become a function of the method's own seed, and the training loop's
    random stream is left as it was.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def batched_by_default(device: torch.device) -> bool:
    """Whether `task_jacobian` batches the encoder's backward passes on `device` by default.

    Nowhere, as measured (`bench/step_time.py`, bench/README.md): on the CPU the
    batched pass is slower (2.3x for the default model's encoder: vmap's
    batching rules copy between layouts) and its sums run in another order; on
    an H200 the default model's exact-gradient steps cost 1.59-1.77x equal
    batched against 1.47-1.68x with one pass per task, and the same inside CUDA
    graphs.  `StepGraph.batched_jacobian=True` still asks for it.
    """
    return False


def task_jacobian(graph: StepGraph) -> torch.Tensor:
    """(T, P) gradients of each task's loss w.r.t. the shared parameters.

    Also accumulates each task's gradient into its own parameters' `.grad`.

    With a shared representation z, each task's loss is differentiated once,
    w.r.t. z and its own parameters (so every head is traversed once), and
    the T cotangents dL_t/dz are then pushed through the encoder: in one
    batched backward pass when `graph.batched_jacobian` (default: on CUDA),
    else one pass per task.  The batched pass runs autograd under
    `torch.func.vmap`; where an operation of the encoder's backward has no
    batching rule (`max_unpool2d`'s backward on channels_last tensors, in
    SegNet's decoder) vmap raises, and the per-task passes take over.
    """
    shared = graph.shared_parameters
    z = graph.shared_representation
    rows: list[torch.Tensor] = []
    cotangents: list[torch.Tensor] = []
    for t, own in enumerate(graph.task_parameters):
        # With z given, autograd stops at z: only task t's head is traversed.
        inputs = [z] if z is not None else shared
        grads = torch.autograd.grad(graph.task_losses[t], [*inputs, *own], retain_graph=True)
        accumulate_grad(own, grads[len(inputs) :])
        if z is not None:
            cotangents.append(grads[0])
        else:
            rows.append(flatten(grads[: len(inputs)], shared))
    if z is None:
        return torch.stack(rows)
    batched = graph.batched_jacobian
    if batched is None:
        batched = batched_by_default(z.device)
    if batched:
        jacobian = batched_encoder_jacobian(z, shared, torch.stack(cotangents))
        if jacobian is not None:
            return jacobian
    for t, cotangent in enumerate(cotangents):
        grads = torch.autograd.grad(
            z, shared, grad_outputs=cotangent, retain_graph=t < len(cotangents) - 1
        )
        rows.append(flatten(grads, shared))
    return torch.stack(rows)


def batched_encoder_jacobian(
    z: torch.Tensor, shared: list[nn.Parameter], cotangents: torch.Tensor
) -> torch.Tensor | None:
    """(T, P) the T cotangents (T, *z.shape) pushed through the encoder in one backward pass.

    None when an operation on the way has no batching rule (vmap raises
    before anything is accumulated); the graph is kept for the caller's
    per-task passes.  Not `autograd.grad(is_grads_batched=True)`: that runs
    on the legacy vmap, whose fallback slices every convolution's backward
    into T calls again.
    """

    def pull_back(cotangent: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return torch.autograd.grad(
            z, shared, grad_outputs=cotangent, retain_graph=True, allow_unused=True
        )

    try:
        grads = torch.func.vmap(pull_back)(cotangents)
    except RuntimeError:
        return None
    num_tasks = cotangents.shape[0]
    return torch.cat(
        [
            (g if g is not None else p.new_zeros((num_tasks, *p.shape))).reshape(num_tasks, -1)
            for g, p in zip(grads, shared, strict=True)
        ],
        dim=1,
    )


def flatten(grads: tuple[torch.Tensor | None, ...], params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def accumulate_grad(params: list[nn.Parameter], grads: tuple[torch.Tensor | None, ...]) -> None:
    for p, g in zip(params, grads, strict=True):
        if g is None:
            continue
        p.grad = g if p.grad is None else p.grad + g


def set_flat_grad(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        accumulate_grad([p], (flat[offset : offset + n].view_as(p),))
        offset += n


WEIGHTINGS: Registry[type[Weighting]] = Registry("weighting")
