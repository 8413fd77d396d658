"""The one training loop, for every architecture and weighting method.

It has no branch on a method's name: the architecture maps images to
predictions, each task gives its loss and metrics, and the weighting method
turns the step's losses into gradients (`Weighting.backward`).
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from typing import Protocol as Interface

import torch
from torch.utils.flop_counter import FlopCounterMode

import runners.models
import runners.weighting  # noqa: F401  (registers methods)
from runners.benchmarks import BENCHMARKS, Benchmark, Protocol
from runners.benchmarks.base import Batch
from runners.models import BackboneChoice, MultiTaskModel
from runners.models.base import paired_initialisation
from runners.multi_input import TaskBatches, evaluation_batches, one_image
from runners.optim import OPTIMIZERS, SCHEDULERS
from runners.protocol_checks import (
    checked_parameters,
    model_from_spec,
    protocol_problems,
)
from runners.splits import held_out
from runners.step import TrainingStep, peak_memory, reset_peak_memory
from runners.weighting import WEIGHTINGS, Weighting
from runners.weighting.base import FORMERLY_SEEDED, METHOD_SEED


class Diverged(RuntimeError):
    """A training loss became NaN or infinite."""


class TimeLimitExceeded(RuntimeError):
    """A job trained longer than its protocol's time limit (`Protocol.time_limit_s`)."""

    def __init__(self, limit_s: float) -> None:
        super().__init__(f"exceeded the protocol's time limit of {format_duration(limit_s)}")
        self.limit_s = limit_s


def format_duration(seconds: float) -> str:
    """'45 s', '20 min', '1 h 30 min': a limit as an operator reads it.

    >>> format_duration(45), format_duration(1200), format_duration(5400)
    ('45 s', '20 min', '1 h 30 min')
    """
    if seconds < 60:
        return f"{seconds:g} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


@dataclass(frozen=True)
class CurvePoint:
    epoch: int
    task: str
    name: str  # "loss" (mean training loss) or "weight" (mean task weight)
    value: float


@dataclass
class RunResult:
    """What a job produces; the worker returns it to the dispatcher, which stores it."""

    metrics: dict[str, dict[str, float]]
    curves: list[CurvePoint]
    parameter_count: int
    wall_time_s: float
    device: str
    library_versions: dict[str, str] = field(default_factory=dict)
    flops: int | None = None  # forward FLOPs of one input image
    # Peak GPU memory allocated by the job (`torch.cuda.max_memory_allocated`); None on the CPU.
    peak_gpu_memory_bytes: int | None = None
    # The epoch of the checkpoint this attempt resumed from (its first attempt's node
    # died), or None: it trained from the start.
    resumed_from_epoch: int | None = None


ProgressCallback = Callable[[int, int], None]


class DataParallel(Interface):
    """This worker's part in a data-parallel job (`runners.distributed` implements it).

    The loop's only hooks: the model is prepared once (batch norm over the whole
    batch), each step trains on this worker's shard of the batch, and after the
    weighting method's backward the gradients are averaged over the workers, so
    that every worker applies the same update and keeps the same parameters.
    """

    @property
    def rank(self) -> int: ...

    def prepare(self, model: torch.nn.Module) -> None: ...

    def shard(self, index: torch.Tensor) -> torch.Tensor: ...

    def average(self, tensors: list[torch.Tensor]) -> None: ...


def build(
    spec: Mapping[str, Any], benchmark: Benchmark, protocol: Protocol, seed: int | None = None
) -> tuple[MultiTaskModel, Weighting, torch.optim.Optimizer, Any]:
    """Model, method, optimiser and scheduler of a validated spec.

    Parameters are re-checked through the registries' models: a job carries
    its spec as plain data, and the worker trusts nothing it did not check.
    `seed`: the job's, for a protocol that pairs initialisations across submissions.
    """
    problems = protocol_problems(spec, benchmark, protocol)
    if problems:
        raise ValueError("; ".join(str(p) for p in problems))
    backbone = BackboneChoice.from_spec(spec["architecture"]["backbone"]).name
    paired = seed if protocol.paired_initialisation else None
    with paired_initialisation(paired):
        model = model_from_spec(
            spec["architecture"], benchmark, pretrained=protocol.pretrained_for(backbone)
        )
    model.scale_outputs(protocol.output_scaling)
    weighting_section = dict(spec["weighting"])
    # A spec stored while stochastic methods took a `seed` (now the platform's, METHOD_SEED):
    # its reruns draw as its first runs did.
    legacy_seed = (
        weighting_section.pop("seed", None)
        if weighting_section.get("name") in FORMERLY_SEEDED
        else None
    )
    w_name, w_params = checked_parameters("weighting", weighting_section)
    weighting = WEIGHTINGS.get(w_name)(len(benchmark.tasks), **w_params)
    if legacy_seed is not None:
        if isinstance(legacy_seed, bool) or not isinstance(legacy_seed, int):
            raise ValueError(f"weighting.seed: expected an integer, got {legacy_seed!r}")
        if legacy_seed != METHOD_SEED:
            weighting.reseed(legacy_seed)
    o_name, o_params = checked_parameters("optimizer", spec["optimizer"])
    optimizer = OPTIMIZERS.get(o_name)([*model.parameters(), *weighting.parameters()], **o_params)
    scheduler = None
    if spec.get("scheduler"):
        s_name, s_params = checked_parameters("scheduler", spec["scheduler"])
        scheduler = SCHEDULERS.get(s_name)(optimizer, protocol.epochs, **s_params)
    return model, weighting, optimizer, scheduler


def train(
    spec: Mapping[str, Any],
    seed: int,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
    *,
    train_data: Batch | None = None,
    evaluation_data: Batch | None = None,
    checkpoint: Path | None = None,
    parallel: DataParallel | None = None,
    time_limit_s: float | None = None,
) -> RunResult:
    """Train `spec` under its benchmark's protocol with `seed`; evaluate on the test split.

    `train_data` and `evaluation_data` replace the train and test splits: a
    tuning trial (`runners.tuning`) trains on the train split less its
    validation part and is scored on that part, so it never loads the test split.
    On CPU the same (spec, seed, thread count) gives the same metrics.
    Raises `Diverged` if an epoch's mean training loss is not finite.

    `checkpoint`: a file on storage every node reaches.  Every
    `protocol.checkpoint_every` epochs the whole training state is saved
    there, and a run that finds it resumes from it (a retry after its node
    died), with the same metrics as a run that was never interrupted.

    `parallel`: this worker's part in a data-parallel job (`runners.distributed`);
    None, the ordinary case: the whole batch here.

    `time_limit_s`: raise `TimeLimitExceeded` once training has taken longer,
    checked at every step; the time spent before a resume counts (it is saved
    in the checkpoint), so a retried job gets no fresh budget.
    """
    started = time.perf_counter()
    reset_peak_memory(torch.device(device))
    benchmark = BENCHMARKS.get(str(spec["benchmark"]))
    protocol = benchmark.protocol(int(spec["protocol_version"]))
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    model, weighting, optimizer, scheduler = build(spec, benchmark, protocol, seed)
    # channels_last: 2.4x faster for this kind of network on CPU (docs/design.md).
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    weighting = weighting.to(device)
    if parallel is not None:
        if weighting.meta_split is not None:
            raise ValueError(
                f"{spec['weighting']['name']} learns its task weights from each worker's meta"
                " batches: it cannot train data-parallel (resources.workers must be 1)"
            )
        parallel.prepare(model)
    if train_data is None:
        train_data = benchmark.load("train", protocol)
    train_data, meta_data = meta_part(train_data, weighting, benchmark, protocol)
    train_data = {k: v.to(device) for k, v in train_data.items()}
    if meta_data is not None:
        meta_data = {k: v.to(device) for k, v in meta_data.items()}
    tasks = benchmark.tasks

    curves: list[CurvePoint] = []
    first_epoch = 0
    resumed_from_epoch = None
    spent_before = 0.0  # training time of earlier attempts (a resumed job)
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, device)
        curves = restore_training_state(state, model, weighting, optimizer, scheduler, generator)
        first_epoch = int(state["epoch"]) + 1
        resumed_from_epoch = int(state["epoch"])
        spent_before = float(state.get("elapsed_s", 0.0))
    deadline = None if time_limit_s is None else started + time_limit_s - spent_before
    # The protocol may set the batch size per backbone (NYUv2: SegNet 2, ResNet-50 8).
    batch_size = protocol.batch_size_for(model.backbone.name)
    # Multi-input: each task draws its own batch of its own data (`runners.multi_input`).
    per_task = TaskBatches.of(train_data, tasks, batch_size) if benchmark.multi_input else None
    n_train = 0 if per_task else train_data["image"].shape[0]
    steps = per_task.steps if per_task else math.ceil(n_train / batch_size)
    # Forward, losses, the method's backward, the optimiser: eager, or CUDA graphs (`runners.step`).
    train_step = TrainingStep(
        model,
        weighting,
        optimizer,
        tasks,
        device,
        parallel=parallel,
        multi_input=benchmark.multi_input,
    )
    for epoch in range(first_epoch, protocol.epochs):
        model.train()
        if per_task:
            streams = per_task.epoch(generator, device)
        else:
            order = torch.randperm(n_train, generator=generator).to(device)
        # Sums stay on the device; one host sync per epoch, not per step.
        loss_sum = torch.zeros(len(tasks), device=device)
        weight_sum = torch.zeros(len(tasks), device=device)
        for step in range(steps):
            if deadline is not None and time.perf_counter() > deadline:
                raise TimeLimitExceeded(float(time_limit_s or 0.0))
            if per_task:
                count = weighting.samples_per_step - 1
                key = (seed, epoch, step)
                batch, samples = task_batches(
                    per_task, train_data, streams, step, count, key, parallel
                )
            else:
                index = order[step * batch_size : (step + 1) * batch_size]
                # A double-sampling method's further batches (none for the others).
                extra = extra_indices(
                    n_train, weighting.samples_per_step - 1, len(index), seed, epoch, step
                )
                if parallel is not None:
                    index = parallel.shard(index)
                    extra = [parallel.shard(i) for i in extra]
                batch = {k: v[index] for k, v in train_data.items()}
                samples = [{k: v[i.to(device)] for k, v in train_data.items()} for i in extra]
            meta = None
            if meta_data is not None:
                meta = meta_batch(meta_data, benchmark, batch_size, (seed, epoch, step))
            if protocol.augmentation:
                # On the device, with the job's generator: a run repeats.
                batch = benchmark.augment(batch, generator)
                if samples:
                    drawing = extra_generator(seed, epoch, step, "augmentation")
                    samples = [benchmark.augment(sample, drawing) for sample in samples]
            losses, weights = train_step(batch, samples, meta)
            loss_sum += losses
            weight_sum += weights
        if parallel is not None:
            # Every worker sees the same epoch means: same curves, same verdict on divergence.
            parallel.average([loss_sum, weight_sum])
        mean_losses = loss_sum / steps
        if not bool(torch.isfinite(mean_losses).all()):
            raise Diverged(f"training loss not finite in epoch {epoch}: {mean_losses.tolist()}")
        weighting.end_epoch(mean_losses)
        for t, loss, weight in zip(
            tasks, mean_losses.tolist(), (weight_sum / steps).tolist(), strict=True
        ):
            curves.append(CurvePoint(epoch, t.name, "loss", loss))
            curves.append(CurvePoint(epoch, t.name, "weight", weight))
        if scheduler is not None:
            scheduler.step()
        if progress is not None:
            progress(epoch + 1, protocol.epochs)
        every = protocol.checkpoint_every
        # Not after the last epoch: the result is recorded next.
        last = epoch + 1 == protocol.epochs
        # Data-parallel: the workers' states are the same; the first one writes it.
        due = every > 0 and (epoch + 1) % every == 0 and not last
        if checkpoint is not None and due and (parallel is None or parallel.rank == 0):
            save_checkpoint(
                checkpoint,
                {
                    **training_state(
                        epoch, model, weighting, optimizer, scheduler, generator, curves
                    ),
                    # Time counts across attempts: a resumed job gets no fresh budget.
                    "elapsed_s": spent_before + time.perf_counter() - started,
                },
            )

    metrics = evaluate(model, benchmark, protocol, device, evaluation_data, batch_size=batch_size)
    flops = forward_flops(model, one_image(train_data, tasks, multi_input=benchmark.multi_input))
    return RunResult(
        metrics=metrics,
        curves=curves,
        parameter_count=sum(p.numel() for p in model.parameters()),
        flops=flops,
        peak_gpu_memory_bytes=peak_memory(torch.device(device)),
        wall_time_s=time.perf_counter() - started,
        device=device_name(device),
        library_versions={"torch": torch.__version__, "python": platform.python_version()},
        resumed_from_epoch=resumed_from_epoch,
    )


def training_state(
    epoch: int,
    model: MultiTaskModel,
    weighting: Weighting,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
    curves: list[CurvePoint],
) -> dict[str, Any]:
    """Everything a run needs to go on after `epoch` as if it had never stopped.

    Tensors and plain data only, so that `load_checkpoint` reads it with
    `weights_only=True`.  The global torch generator is saved too: dropout and
    the random methods (PCGrad, RLW, GradDrop) draw from it.
    """
    return {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "weighting": weighting.checkpoint_state(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "generator": generator.get_state(),
        "curves": [[c.epoch, c.task, c.name, c.value] for c in curves],
    }


def restore_training_state(
    state: dict[str, Any],
    model: MultiTaskModel,
    weighting: Weighting,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
) -> list[CurvePoint]:
    """Put a `training_state` back into freshly built objects; return its curves."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    weighting.load_checkpoint_state(state["weighting"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    generator.set_state(state["generator"].cpu())
    return [CurvePoint(int(e), str(t), str(n), float(v)) for e, t, n, v in state["curves"]]


def extra_generator(*key: object) -> torch.Generator:
    """A CPU generator seeded by the sha256 of `key` alone."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def task_batches(
    per_task: TaskBatches,
    data: Batch,
    streams: list[torch.Tensor],
    step: int,
    count: int,
    key: tuple[int, int, int],
    parallel: DataParallel | None,
) -> tuple[Batch, list[Batch]]:
    """A multi-input step's batch and a double-sampling method's `count` further ones.

    The further batches are drawn per task by generators keyed by (seed, epoch,
    step, task) alone, as `extra_indices` draws them for a single-input benchmark.
    Data-parallel: each worker takes its shard of every task's rows.
    """
    index = per_task.indices(streams, step)
    extra = per_task.extra(count, lambda task: extra_generator(*key, task))
    if parallel is not None:
        index = [parallel.shard(i) for i in index]
        extra = [[parallel.shard(i) for i in sample] for sample in extra]
    return per_task.batch(data, index), [per_task.batch(data, sample) for sample in extra]


def extra_indices(
    n_train: int, count: int, batch_size: int, seed: int, epoch: int, step: int
) -> list[torch.Tensor]:
    """The examples of `count` further batches for one step of a double-sampling method.

    Each batch is `batch_size` examples drawn without replacement from the
    whole train split (as SDMGrad's authors draw them, from a second shuffled
    loader), by a generator seeded by (seed, epoch, step) alone: the
    protocol's data order and augmentation draws, which the job's generator
    makes and which pair submissions, are the same for every method, and a
    run resumed from a checkpoint draws the same batches.
    """
    if count == 0:
        return []
    generator = extra_generator(seed, epoch, step)
    return [torch.randperm(n_train, generator=generator)[:batch_size] for _ in range(count)]


def meta_part(
    train_data: Batch, weighting: Weighting, benchmark: Benchmark, protocol: Protocol
) -> tuple[Batch, Batch | None]:
    """(what the model trains on, where a bilevel method's meta batches come from).

    `meta_split` "validation": the protocol's validation part of `train_data`
    (`runners.splits.held_out`: in a job, the part tuning scores on; in a tuning
    trial, a part of the trial's own train data), which the model does not
    train on; "train": the train data itself; None: no meta batches.
    """
    if weighting.meta_split is None:
        return train_data, None
    if weighting.meta_split == "train":
        return train_data, train_data
    return held_out(train_data, benchmark, protocol)


def meta_batch(
    meta_data: Batch, benchmark: Benchmark, batch_size: int, key: tuple[int, int, int]
) -> Batch:
    """One step's meta batch: `batch_size` examples drawn without replacement (per task on a
    multi-input benchmark).

    By a generator seeded by `key` = (seed, epoch, step) alone, as `extra_indices`:
    the protocol's data order stays every method's, and a resumed run draws
    the same meta batches.
    """
    if benchmark.multi_input:
        per_task = TaskBatches.of(meta_data, benchmark.tasks, batch_size)
        [drawn] = per_task.extra(1, lambda task: extra_generator(*key, "meta", task))
        return per_task.batch(meta_data, drawn)
    generator = extra_generator(*key, "meta")
    index = torch.randperm(meta_data["image"].shape[0], generator=generator)[:batch_size]
    index = index.to(meta_data["image"].device)
    return {k: v[index] for k, v in meta_data.items()}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a reader sees the old file or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save(state, partial)
    partial.replace(path)


def load_checkpoint(path: Path, device: str) -> dict[str, Any]:
    """A checkpoint saved by `save_checkpoint`; tensors and plain data only, nothing unpickled."""
    state: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
    return state


@torch.no_grad()
def evaluate(
    model: MultiTaskModel,
    benchmark: Benchmark,
    protocol: Protocol,
    device: str,
    data: Batch | None = None,
    *,
    batch_size: int | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of every task over the whole test split (or over `data`, when given).

    `batch_size` (default: the protocol's) changes the speed, not the metrics.
    """
    model.eval()
    if data is None:
        data = benchmark.load("test", protocol)
    data = {k: v.to(device) for k, v in data.items()}
    states = {t.name: t.new_state() for t in benchmark.tasks}
    step = batch_size or protocol.batch_size
    # Multi-input: each task's own test images only (`runners.multi_input`).
    for image, targets in evaluation_batches(
        data, benchmark.tasks, step, multi_input=benchmark.multi_input
    ):
        _, outputs = model(image)
        for name, target in targets.items():
            states[name].update(outputs[name], target)
    metrics = {name: state.compute() for name, state in states.items()}
    for task, values in metrics.items():
        for metric, value in values.items():
            if not math.isfinite(value):
                raise Diverged(f"test metric {task}.{metric} is not finite: {value}")
    return metrics


@torch.no_grad()
def forward_flops(model: MultiTaskModel, image: torch.Tensor) -> int:
    """FLOPs of one forward pass in eval mode, as torch counts them (a multiply-add is 2)."""
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(image)
    return int(counter.get_total_flops())


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
