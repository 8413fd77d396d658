"""The training step: which plan each method gets on CUDA, and what the CPU can check of it.

CUDA graphs cannot be captured without a GPU; what the capture relies on is
checked here: the warm-up's state is restored exactly, the two parts of a
"split" step are the eager step op for op, graph-safe methods keep their
state in the same tensors, and results repeat for a seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from runners.benchmarks import BENCHMARKS
from runners.benchmarks.synthetic_scenes import SyntheticScenes
from runners.step import State, TrainingStep, graph_plan, prepare_optimizer
from runners.train import build, train
from runners.weighting import WEIGHTINGS, Weighting
from runners.weighting.base import GramAggregation

MINI = BENCHMARKS.get("synthetic-scenes-mini")
PROTOCOL = MINI.protocol(1)
CUDA = torch.device("cuda")  # a device object only: nothing runs on it here


def spec(weighting: str, optimizer: str = "adam", **params: Any) -> dict[str, Any]:
    return {
        "benchmark": MINI.name,
        "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": weighting, **params},
        "optimizer": {"name": optimizer, "lr": 1e-3, "weight_decay": 0.0},
    }


def setup(
    weighting: str, *, batched: bool | None = None
) -> tuple[TrainingStep, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model, method, optimizer, _ = build(spec(weighting), MINI, PROTOCOL)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    data = MINI.load("train", PROTOCOL)
    batch = {k: v[:4] for k, v in data.items()}
    step = TrainingStep(model, method, optimizer, MINI.tasks, "cpu", batched_jacobian=batched)
    return step, batch


def state_of(step: TrainingStep) -> dict[str, torch.Tensor]:
    """Every tensor a step changes: parameters, buffers, the method's and the optimiser's state."""
    tensors = {f"model.{k}": v for k, v in step.model.state_dict().items()}
    for path, saved in step.weighting.checkpoint_state().items():
        for kind in ("parameters", "buffers"):
            for name, value in saved[kind].items():
                if value is not None:
                    tensors[f"weighting.{path}.{kind}.{name}"] = value
    for i, state in enumerate(step.optimizer.state.values()):
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{i}.{name}"] = value
    return {k: v.detach().clone() for k, v in tensors.items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def gram_methods() -> list[str]:
    return [n for n in WEIGHTINGS.names() if issubclass(WEIGHTINGS.get(n), GramAggregation)]


def graph_safe_methods() -> list[str]:
    return [n for n in WEIGHTINGS.names() if WEIGHTINGS.get(n).graph_safe]


ZOO_II_EAGER = ("scale-invariant", "stch", "imtl-full", "excess-mtl", "moco", "sdmgrad", "modo")
BILEVEL = ("auto-lambda", "moml", "forum")


def test_graph_plans_on_cuda() -> None:
    def plan(name: str, optimizer: str = "adam", **kwargs: Any) -> str:
        torch.manual_seed(0)
        _, method, opt, _ = build(spec(name, optimizer), MINI, PROTOCOL)
        return graph_plan(method, opt, kwargs.pop("device", CUDA), **kwargs)[0]

    assert graph_safe_methods() == [
        "dtp", "dwa", "equal", "fixed", "gls", "uncertainty"
    ]  # fmt: skip
    for name in graph_safe_methods():
        assert plan(name) == "whole"
    # Every solver on the Gram matrix: two graphs around the one host copy of G.
    assert gram_methods() == [
        "aligned-mtl", "cagrad", "fairgrad", "gradvac", "imtl", "mgda", "nash-mtl", "pcgrad",
        "upgrad",
    ]  # fmt: skip
    for name in gram_methods():
        assert plan(name) == "split"
    # A draw from a CPU generator, a mask from the global RNG, a host-side step
    # counter, a solver on z's gradients, a learnt weighting with its own optimiser;
    # STCH's epoch counter, J of learnt-scaled losses (IMTL), host-side step counters
    # and lazily created buffers (ExcessMTL, MoCo); three batches a step (SDMGrad, MoDo).
    for name in ZOO_II_EAGER:
        assert plan(name) == "eager", name
    for name in ("rlw", "graddrop", "db-mtl", "mgda-ub", "gradnorm", "famo"):
        assert plan(name) == "eager", name
    assert plan("equal", "sgd") == "eager"  # SGD reads its learning rate on the host
    assert plan("equal", data_parallel=True) == "eager"
    assert plan("pcgrad", device=torch.device("cpu")) == "eager"
    # A bilevel method's look-ahead steps on a meta batch.
    for name in BILEVEL:
        assert plan(name) == "eager", name
    eager = ["rlw", "graddrop", "db-mtl", "mgda-ub", "gradnorm", "famo", *ZOO_II_EAGER, *BILEVEL]
    # Every method is classified above.
    assert sorted([*graph_safe_methods(), *gram_methods(), *eager]) == sorted(WEIGHTINGS.names())


@pytest.mark.parametrize("name", graph_safe_methods())
def test_graph_safe_methods_keep_their_state_in_the_same_tensors(name: str) -> None:
    """A replay reads and writes the tensors the capture saw: state must change in place."""
    step, batch = setup(name)

    def addresses(method: Weighting) -> dict[str, int]:
        found = {}
        for path, saved in method.checkpoint_state().items():
            for kind in ("parameters", "buffers", "attributes"):
                for key, value in saved[kind].items():
                    if isinstance(value, torch.Tensor):
                        found[f"{path}.{kind}.{key}"] = value.data_ptr()
        return found

    step(batch)  # lazily created state exists from the first step on
    before = addresses(step.weighting)
    for _ in range(3):
        losses, _ = step(batch)
        step.weighting.end_epoch(losses.detach())
    assert addresses(step.weighting) == before


@pytest.mark.parametrize("name", ["equal", "uncertainty", "dtp", "pcgrad", "gradvac", "upgrad"])
def test_warm_up_steps_are_undone_exactly(name: str) -> None:
    """Before a capture, warm-up steps run on the state and are then undone: they leave no trace."""
    warmed, batch = setup(name)
    saved = State(warmed.model, warmed.weighting, warmed.optimizer, torch.device("cpu"))
    for _ in range(2):
        warmed(batch)
    saved.restore()
    warmed(batch)
    fresh, _ = setup(name)
    fresh(batch)
    assert_same(state_of(warmed), state_of(fresh))


@pytest.mark.parametrize("name", gram_methods())
def test_the_two_parts_of_a_split_step_are_the_eager_step(name: str) -> None:
    """What the two graphs capture, with the host's solve between them, is the eager step."""
    eager, batch = setup(name)
    split, _ = setup(name)
    method = split.weighting
    assert isinstance(method, GramAggregation)
    for _ in range(2):
        losses, weights = eager(batch)
        split_losses, jacobian, gram = split.jacobian_part(batch)
        host = method.weights_from_gram(gram.to("cpu", torch.float64))
        split_weights = host.to(jacobian.device, jacobian.dtype)
        split.update_part(split_weights, jacobian)
        assert torch.equal(split_losses, losses) and torch.equal(split_weights, weights)
    assert_same(state_of(eager), state_of(split))


@pytest.mark.parametrize("batched", [False, True])
def test_steps_repeat_bit_for_bit_for_a_seed(batched: bool) -> None:
    """Same seed, same device: same parameters after a few steps (batched Jacobian included)."""
    torch.set_num_threads(1)
    results = []
    for _ in range(2):
        step, batch = setup("upgrad", batched=batched)
        for _ in range(3):
            step(batch)
        results.append(state_of(step))
    assert_same(*results)


# A protocol of 8 scenes, batch 4, 2 epochs: `train` twice per method, in seconds.
TINY = SyntheticScenes(
    "test-step-scenes",
    "synthetic-scenes-mini with 8 train / 8 test scenes, batch 4, 2 epochs (tests only).",
    {1: dataclasses.replace(PROTOCOL, train_size=8, test_size=8, epochs=2, batch_size=4)},
)


@pytest.mark.parametrize("name", ["equal", "dwa", "mgda"])
def test_training_is_deterministic_per_seed_on_the_cpu(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim of runners.step on the CPU: the same seed gives the same metrics and curves."""
    monkeypatch.setitem(BENCHMARKS._entries, TINY.name, TINY)
    torch.set_num_threads(1)
    runs = [train({**spec(name), "benchmark": TINY.name}, seed=3) for _ in range(2)]
    assert runs[0].metrics == runs[1].metrics
    assert runs[0].curves == runs[1].curves
    assert runs[0].peak_gpu_memory_bytes is None  # measured on CUDA only


# A CPU stand-in for CUDA graphs, to test the capture and replay logic without a GPU.
# Capture records every aten op the step dispatches (forward, backward, optimiser)
# with the very tensors it read and wrote; replay runs the recorded ops again on
# those tensors and writes each result into the tensor the capture produced.  Like
# a CUDA graph it never re-runs Python: state a method keeps outside tensors, or
# replaces instead of updating in place, goes stale, and the comparison with eager
# steps below fails.  Reading a value on the host during capture is refused.
HOST_READS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.nonzero.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.equal.default,
}


METADATA_IN_PLACE = {"squeeze_", "unsqueeze_", "t_", "transpose_", "as_strided_", "resize_"}


class _Recorder(TorchDispatchMode):
    def __init__(self, ops: list[Any]) -> None:
        super().__init__()
        self.ops = ops

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in HOST_READS or kwargs.get("generator") is not None:
            raise RuntimeError(f"operation not permitted when stream is capturing: {func}")
        out = func(*args, **kwargs)
        # Where each output lay when it was written (an in-place squeeze_ may move it later).
        layout = [(t.size(), t.stride(), t.storage_offset()) for t in _tensors(out)]
        self.ops.append((func, args, kwargs, out, layout))
        return out


class FakeGraph:
    def __init__(self) -> None:
        self.ops: list[Any] = []
        self.replays = 0

    def pool(self) -> None:
        return None

    def replay(self) -> None:
        self.replays += 1
        with torch.no_grad():
            for func, args, kwargs, out, layout in self.ops:
                if func.overloadpacket.__name__ in METADATA_IN_PLACE:
                    continue  # changes a tensor's shape, not its data: done once, at capture
                new = func(*args, **kwargs)
                for old, fresh, (size, stride, offset) in zip(
                    _tensors(out), _tensors(new), layout, strict=True
                ):
                    target = old.as_strided(size, stride, offset)
                    if target.data_ptr() != fresh.data_ptr() or target.stride() != fresh.stride():
                        target.copy_(fresh)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    return []


class _FakeStream:
    def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def wait_stream(self, other: Any) -> None: ...


@contextlib.contextmanager
def _fake_capture(graph: FakeGraph, pool: Any = None) -> Iterator[None]:
    with _Recorder(graph.ops):
        yield


def _live_state(step: TrainingStep) -> list[torch.Tensor]:
    """Every tensor of the state a step reads and changes (the live tensors, not copies)."""
    tensors = list(step.model.state_dict().values())
    tensors += [t for s in step.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    for saved in step.weighting.checkpoint_state().values():
        for kind in ("parameters", "buffers", "attributes"):
            tensors += [t for t in saved[kind].values() if isinstance(t, torch.Tensor)]
    return tensors


def _without_running(capture: Any) -> Any:
    """A capture that, like CUDA's, leaves the state as it was: the recording runs the ops,
    so every state tensor is put back in place afterwards."""

    def wrapped(step: TrainingStep, static: dict[str, torch.Tensor]) -> Any:
        saved = [(t, t.detach().clone()) for t in _live_state(step)]
        try:
            return capture(step, static)
        finally:
            with torch.no_grad():
                for t, value in saved:
                    t.copy_(value)

    return wrapped


@pytest.fixture
def fake_cuda_graphs(monkeypatch: pytest.MonkeyPatch) -> list[FakeGraph]:
    """torch.cuda's graph API on the CPU, and Adam capturable there; returns the graphs made."""
    made: list[FakeGraph] = []
    for name in ("_capture_whole", "_capture_split"):
        monkeypatch.setattr(TrainingStep, name, _without_running(getattr(TrainingStep, name)))

    def new_graph() -> FakeGraph:
        made.append(FakeGraph())
        return made[-1]

    monkeypatch.setattr(torch.cuda, "CUDAGraph", new_graph)
    monkeypatch.setattr(torch.cuda, "graph", _fake_capture)
    monkeypatch.setattr(torch.cuda, "Stream", _FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: _FakeStream())
    adam = importlib.import_module("torch.optim.adam")
    monkeypatch.setattr(adam, "_get_capturable_supported_devices", lambda *a, **k: ["cpu"])
    return made


def emulated(
    name: str, plan: str, batched: bool | None = None
) -> tuple[TrainingStep, dict[str, torch.Tensor]]:
    """A step of `name` on the CPU that captures `plan` as on CUDA (with the fake graphs)."""
    step, batch = setup(name, batched=batched)
    step.plan = plan  # type: ignore[assignment]
    prepare_optimizer(step.optimizer, step.device, capturable=True)
    return step, batch


@pytest.mark.parametrize(
    ("name", "plan", "batched"),
    [(n, "whole", None) for n in graph_safe_methods()]
    + [(n, "split", False) for n in gram_methods()]
    # As on CUDA: the batched Jacobian (vmap) inside the captured graph.
    + [(n, "split", True) for n in ("pcgrad", "upgrad")],
)
def test_replayed_steps_train_exactly_as_eager_steps(
    name: str, plan: str, batched: bool | None, fake_cuda_graphs: list[FakeGraph]
) -> None:
    """Warm-up undone, capture, replays on new batches, a scheduler and an epoch boundary between:
    the parameters and the method's state are those of eager steps, bit for bit."""
    torch.set_num_threads(1)
    data = MINI.load("train", PROTOCOL)
    batches = [{k: v[4 * i : 4 * i + 4] for k, v in data.items()} for i in range(4)]
    steps = []
    for replayed in (True, False):
        step, _ = emulated(name, plan, batched) if replayed else setup(name, batched=batched)
        if not replayed:
            prepare_optimizer(step.optimizer, step.device, capturable=True)
        scheduler = torch.optim.lr_scheduler.StepLR(step.optimizer, step_size=1, gamma=0.5)
        for i, batch in enumerate(batches):
            losses, weights = step(batch)
            assert torch.isfinite(losses).all() and torch.isfinite(weights).all()
            if i == 1:  # an epoch boundary: state changed outside the graphs
                # Unequal changes, so that DWA's weights move away from 1.
                step.weighting.end_epoch(losses.detach().clone())
                step.weighting.end_epoch(losses.detach() * torch.linspace(0.8, 1.2, len(losses)))
                scheduler.step()
        steps.append(step)
    replayed_step, eager_step = steps
    assert replayed_step.graph_failure is None
    assert replayed_step.plan == plan and replayed_step.replays == len(batches)
    assert [g.replays for g in fake_cuda_graphs] == [len(batches)] * (1 if plan == "whole" else 2)
    assert_same(state_of(replayed_step), state_of(eager_step))


def test_a_host_read_during_capture_falls_back_to_eager_steps(
    fake_cuda_graphs: list[FakeGraph], capsys: pytest.CaptureFixture[str]
) -> None:
    """RLW draws from a CPU generator: its capture fails, and the run goes on eagerly."""
    step, batch = emulated("rlw", "whole")
    fresh, _ = setup("rlw")
    prepare_optimizer(fresh.optimizer, fresh.device, capturable=True)
    for _ in range(2):
        step(batch)
        fresh(batch)
    assert step.plan == "eager" and step.graph_failure is not None
    assert "not permitted when stream is capturing" in step.graph_failure
    assert "capture of the RLW step failed, running it eagerly" in capsys.readouterr().err
    assert_same(state_of(step), state_of(fresh))  # the failed capture left no trace
