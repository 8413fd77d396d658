"""Data-parallel jobs: one job trained by several Ray Train workers.

A protocol whose `Resources.workers` is above 1 trains each job with Ray
Train's TorchTrainer: `workers` processes (gloo on CPU, NCCL on GPU), each
with the protocol's `cpus` and `gpus`, run the one training loop
(`runners.train.train`) with a `TorchDataParallel` hook:

- every worker draws the same batch order (same seed) and takes its slice of
  each batch (`shard`), so the workers together see the whole batch;
- batch norm uses the statistics of the whole batch (`GlobalBatchNorm2d`), as
  a single process would;
- after the weighting method's backward, every gradient is replaced by its
  mean over the workers (`average`), so every worker applies the same update
  and keeps the same parameters.  The epoch's mean losses are averaged too, so
  every worker records the same curves and judges divergence alike.

A batch that does not divide by the number of workers (a last, short one) gives
unequal shards, which the average weighs equally.

Losses are means over a batch, so with equal shards the averaged gradient of
a loss-weighting method is the gradient of the whole batch: a data-parallel
step equals a single-process step (the tests check it).  A gradient method
(PCGrad, MGDA, ...) works on each worker's own per-task gradients (its
Jacobian rows on its shard), aggregates them there, and the aggregated
updates are averaged: for a non-linear aggregator that is the mean of the
method applied to each shard, not the method applied to the whole batch's
Jacobian (which would need all T task gradients exchanged, T times the
traffic).  Random augmentation draws from the job's generator on every
worker, so shards get the same draws.  State that a method updates outside
autograd from a worker's own losses (FAMO's loss history) stays per worker;
the epoch means it receives (`end_epoch`) are the averaged ones.

Only worker 0's result comes back; it is recorded like any other job's.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn

from runners.jobs import JobOutcome, job_spec
from runners.train import Diverged, train


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole batch across workers.

    mean = sum(x) / n and var = sum((x - mean)^2) / n over every worker's
    shard (two all-reduces that autograd differentiates through), so the
    output, the gradients and the running statistics are those of one process
    on the whole batch.  torch's SyncBatchNorm does the same on GPUs only.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        dist.all_reduce(count)
        mean = dist_fn.all_reduce(x.sum(dims)) / count
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.view(shape)
        var = dist_fn.all_reduce((centred * centred).sum(dims)) / count
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            assert self.running_mean is not None and self.running_var is not None
            assert self.num_batches_tracked is not None
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum or 1.0 / float(self.num_batches_tracked)
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        return y


def global_batch_norm(module: nn.Module) -> None:
    """Turn every BatchNorm2d under `module` into a GlobalBatchNorm2d, in place.

    The new modules hold the same Parameter and buffer objects, so an
    optimiser built before keeps updating them.
    """
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine,
                child.track_running_stats,
            )  # fmt: skip
            replacement.weight, replacement.bias = child.weight, child.bias
            replacement.running_mean = child.running_mean
            replacement.running_var = child.running_var
            replacement.num_batches_tracked = child.num_batches_tracked
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            global_batch_norm(child)


@dataclasses.dataclass(frozen=True)
class TorchDataParallel:
    """The `runners.train.DataParallel` hook over torch.distributed's default group."""

    rank: int
    world_size: int

    def prepare(self, model: nn.Module) -> None:
        global_batch_norm(model)

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This worker's contiguous slice of a batch (equal slices when the batch divides)."""
        return torch.tensor_split(index, self.world_size)[self.rank]

    def average(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the workers: one all-reduce for all of them."""
        if not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker of a data-parallel job; worker 0 reports the outcome."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    parallel = TorchDataParallel(context.get_world_rank(), context.get_world_size())
    torch.set_num_threads(max(1, int(config["cpus"])))
    device = str(ray.train.torch.get_device()) if config["gpus"] > 0 else "cpu"
    checkpoint = None if config["checkpoint"] is None else Path(config["checkpoint"])
    try:
        result = train(
            job_spec(config["spec"]), config["seed"], device=device,
            checkpoint=checkpoint, parallel=parallel, time_limit_s=config["time_limit_s"],
        )  # fmt: skip
        outcome = JobOutcome.succeeded(result)
    except Diverged as e:
        # Losses are averaged and parameters equal: every worker diverges together.
        outcome = JobOutcome.of_exception(e)
    report_outcome(outcome, parallel.rank)


OUTCOME_FILE = "outcome.json"


def report_outcome(outcome: JobOutcome, rank: int) -> None:
    """Report a worker's outcome to Ray Train: worker 0's, as JSON in a checkpoint.

    Ray Train keeps only metrics that come with a checkpoint, so the outcome
    travels as a file in one.  Every worker must call it (it is a barrier).
    """
    import ray.train

    with tempfile.TemporaryDirectory(prefix="mtlb-outcome-") as directory:
        if rank != 0:
            ray.train.report({})
            return
        (Path(directory) / OUTCOME_FILE).write_text(outcome.to_json())
        ray.train.report({}, checkpoint=ray.train.Checkpoint.from_directory(directory))


def reported_outcome(result: Any) -> JobOutcome:
    """The outcome worker 0 reported (`report_outcome`) in a Ray Train `Result`."""
    if result.checkpoint is None:
        raise RuntimeError("worker 0 of the data-parallel job reported no outcome")
    with result.checkpoint.as_directory() as directory:
        return JobOutcome.from_json((Path(directory) / OUTCOME_FILE).read_text())


def execute_data_parallel(
    spec_json: str, seed: int, cpus: float, gpus: float, workers: int,
    checkpoint: str | None = None, time_limit_s: float | None = None,
) -> JobOutcome:  # fmt: skip
    """Run one job data-parallel with Ray Train; never raises, reports the outcome as data.

    Called in a Ray task that holds no CPU, so that the workers get the job's
    resources; its outcome is a `JobOutcome`, as `runners.jobs.execute`'s.
    Another worker's exception fails the whole job (Ray Train stops them all).
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    try:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 2:
            raise TypeError(
                f"a data-parallel job needs an int of at least 2 workers, got {workers!r}"
            )
        job_spec(spec_json)  # a malformed spec fails here, before any worker starts
        resources = {"CPU": cpus, **({"GPU": gpus} if gpus > 0 else {})}
        # Ray Train's own run folder: in the job's checkpoint folder, which the
        # dispatcher removes once the result is recorded; else a temporary one.
        temporary = tempfile.TemporaryDirectory(prefix="mtlb-train-")
        storage = temporary.name if checkpoint is None else str(Path(checkpoint).parent)
        trainer = TorchTrainer(
            worker_loop,
            train_loop_config={
                "spec": spec_json, "seed": seed, "cpus": cpus, "gpus": gpus,
                "checkpoint": checkpoint, "time_limit_s": time_limit_s,
            },
            scaling_config=ScalingConfig(
                num_workers=workers, use_gpu=gpus > 0, resources_per_worker=resources
            ),
            # Retries are the dispatcher's (the task's max_retries, resuming from the checkpoint).
            run_config=RunConfig(
                name="ray-train", storage_path=storage,
                failure_config=FailureConfig(max_failures=0),
            ),
        )  # fmt: skip
        with temporary:
            return reported_outcome(trainer.fit())
    except Exception as e:
        return JobOutcome.of_exception(e)


__all__ = [
    "GlobalBatchNorm2d",
    "TorchDataParallel",
    "execute_data_parallel",
    "global_batch_norm",
    "report_outcome",
    "reported_outcome",
    "worker_loop",
]
