"""Multi-input benchmarks: each task has its own images; the row bookkeeping of a step.

On a multi-input benchmark (`Benchmark.multi_input`, e.g. Office-31's domains)
only the encoder is shared: task t has its own N_t images and labels.  A
split is then laid out as (`runners.benchmarks.base` documents it too)::

    "<task>.image"  (N_t, 3, H, W) float32    ("image" absent)
    "<task>"        (N_t, ...)     the task's targets

Training (LibMTL's convention, `LibMTL.Trainer` with ``multi_input``): every
step each task draws `batch_size` rows of its own data, in its own order; an
epoch is ceil(max_t N_t / batch_size) steps, so the largest task sees its data
about once and a smaller task cycles through its data several times.  Each
epoch, task t's order is ceil(steps * batch_size / N_t) permutations of its
N_t rows, drawn from the job's generator in the benchmark's task order, so a
seed fixes it and a resumed run draws it again.  (LibMTL keeps a small task's
loader running across epochs and drops the largest's last short batch; here
every epoch starts every task afresh and every batch is full, the largest
task's last one completed from its next permutation: every step has the same
shape, which CUDA graphs need.)

One step is ONE forward pass: the tasks' batches are concatenated along the
batch dimension into one `image` (task order; rows [o_t, o_t + B_t) are task
t's, o_t the sum of the earlier tasks' B_u) and task t's loss reads only its
own rows of the outputs (`task_outputs`).  For hard sharing that is exactly
"the shared encoder on every row, each head's loss on its own rows"; an
architecture with task-specific paths computes each task's path on every row
and only the task's own rows count.  Batch normalisation in training mode
therefore takes its statistics over the concatenated batch of every task,
where LibMTL runs the encoder once per task (statistics per domain): a
documented difference, the same for every submission.

Evaluation runs each task on its own test images only, batch by batch
(`evaluation_batches`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from runners.benchmarks.base import Batch
from runners.tasks import Task

IMAGE_SUFFIX = ".image"


def image_key(task: str) -> str:
    """The key of task `task`'s images in a multi-input split."""
    return f"{task}{IMAGE_SUFFIX}"


def split_sizes(data: Batch, tasks: Sequence[Task]) -> tuple[int, ...]:
    """N_t of each task of a multi-input split; a malformed split is one ValueError line."""
    sizes = []
    for task in tasks:
        images, targets = data.get(image_key(task.name)), data.get(task.name)
        if images is None or targets is None:
            raise ValueError(
                f"a multi-input split needs {image_key(task.name)!r} and {task.name!r}"
                f" for every task, found keys {sorted(data)}"
            )
        if images.shape[0] != targets.shape[0]:
            raise ValueError(
                f"task {task.name!r}: {images.shape[0]} images but {targets.shape[0]} targets"
            )
        if images.shape[0] == 0:
            raise ValueError(f"task {task.name!r} has no images")
        sizes.append(int(images.shape[0]))
    return tuple(sizes)


def split_size(data: Batch, tasks: Sequence[Task], *, multi_input: bool) -> int:
    """Images in a split: N, or the sum of the tasks' N_t on a multi-input benchmark."""
    return sum(split_sizes(data, tasks)) if multi_input else int(data["image"].shape[0])


def one_image(data: Batch, tasks: Sequence[Task], *, multi_input: bool) -> torch.Tensor:
    """(1, 3, H, W): the split's first image (the first task's, multi-input), to count FLOPs."""
    return data[image_key(tasks[0].name) if multi_input else "image"][:1]


def task_rows(batch: Batch, tasks: Sequence[Task]) -> list[slice]:
    """Task t's rows of a concatenated training batch: [o_t, o_t + B_t), B_t its targets' count."""
    rows, start = [], 0
    for task in tasks:
        stop = start + int(batch[task.name].shape[0])
        rows.append(slice(start, stop))
        start = stop
    if start != batch["image"].shape[0]:
        raise ValueError(
            f"a multi-input batch of {batch['image'].shape[0]} images has {start} targets"
            " over its tasks; each task's rows must be in the image batch, in task order"
        )
    return rows


def task_outputs(
    outputs: Mapping[str, torch.Tensor], batch: Batch, tasks: Sequence[Task], *, multi_input: bool
) -> list[Mapping[str, torch.Tensor]]:
    """What each task's loss reads: every output, or on a multi-input batch its own rows of each.

    Every output (a task's prediction, auxiliary ones too) is per image along
    dim 0, so restricting all of them keeps `MultiTaskModel.training_loss`
    unchanged.  Slices are views with shapes fixed by the batch's shapes: a
    captured CUDA graph replays them.
    """
    if not multi_input:
        return [outputs] * len(tasks)
    return [{k: v[rows] for k, v in outputs.items()} for rows in task_rows(batch, tasks)]


def evaluation_batches(
    data: Batch, tasks: Sequence[Task], batch_size: int, *, multi_input: bool
) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """(images, {task: its targets of these images}) over a whole split, `batch_size` at a time.

    Single-input: every task's targets of each batch.  Multi-input: each task's
    own test images only, task after task, so its metrics count exactly its N_t images.
    """
    if not multi_input:
        n = data["image"].shape[0]
        for start in range(0, n, batch_size):
            stop = start + batch_size
            yield data["image"][start:stop], {t.name: data[t.name][start:stop] for t in tasks}
        return
    for task, n in zip(tasks, split_sizes(data, tasks), strict=True):
        for start in range(0, n, batch_size):
            stop = start + batch_size
            yield data[image_key(task.name)][start:stop], {task.name: data[task.name][start:stop]}


@dataclass(frozen=True)
class TaskBatches:
    """How the steps of an epoch draw from a multi-input train split (see the module)."""

    tasks: tuple[Task, ...]
    sizes: tuple[int, ...]
    batch_size: int

    @classmethod
    def of(cls, data: Batch, tasks: Sequence[Task], batch_size: int) -> TaskBatches:
        return cls(tuple(tasks), split_sizes(data, tasks), batch_size)

    @property
    def steps(self) -> int:
        """Steps per epoch: the largest task's number of batches."""
        return math.ceil(max(self.sizes) / self.batch_size)

    def epoch(self, generator: torch.Generator, device: torch.device | str) -> list[torch.Tensor]:
        """Each task's order of rows for one epoch, steps * batch_size long (see the module)."""
        needed = self.steps * self.batch_size
        return [_cycled(n, needed, generator).to(device) for n in self.sizes]

    def indices(self, streams: Sequence[torch.Tensor], step: int) -> list[torch.Tensor]:
        """Each task's rows at `step` of the epoch whose orders are `streams`."""
        start = step * self.batch_size
        return [stream[start : start + self.batch_size] for stream in streams]

    def extra(
        self, count: int, generator_for: Callable[[str], torch.Generator]
    ) -> list[list[torch.Tensor]]:
        """`count` further batches of a double-sampling method: each task's `batch_size` rows
        drawn from its whole data by `generator_for(task)` (the loop's per-step key),
        without replacement where the task has that many rows."""
        drawn: list[list[torch.Tensor]] = [[] for _ in range(count)]
        for task, n in zip(self.tasks, self.sizes, strict=True):
            generator = generator_for(task.name)
            for sample in drawn:
                sample.append(_cycled(n, self.batch_size, generator))
        return drawn

    def batch(self, data: Batch, indices: Sequence[torch.Tensor]) -> Batch:
        """The step's batch: the tasks' rows concatenated into `image`, each task's targets."""
        device = data[image_key(self.tasks[0].name)].device
        chosen = [i.to(device) for i in indices]
        images = [data[image_key(t.name)][i] for t, i in zip(self.tasks, chosen, strict=True)]
        batch: Batch = {"image": torch.cat(images).contiguous(memory_format=torch.channels_last)}
        for task, index in zip(self.tasks, chosen, strict=True):
            batch[task.name] = data[task.name][index]
        return batch


def _cycled(n: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """`length` rows of n: permutations of range(n) drawn one after another, the last cut short."""
    permutations = [torch.randperm(n, generator=generator) for _ in range(-(-length // n))]
    return torch.cat(permutations)[:length]
