"""Multi-input benchmarks: per-task batches, one forward pass, each task on its own rows."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from runners.benchmarks import BENCHMARKS
from runners.benchmarks.synthetic_domains import (
    DOMAINS,
    TASKS,
    SyntheticDomains,
    domain_sizes,
)
from runners.models import ARCHITECTURES
from runners.multi_input import (
    TaskBatches,
    evaluation_batches,
    image_key,
    split_sizes,
    task_outputs,
    task_rows,
)
from runners.protocol_checks import model_from_spec
from runners.step import TrainingStep
from runners.train import evaluate, task_batches, train
from runners.tuning import tuning_data
from runners.weighting import WEIGHTINGS
from tests.runners.test_checkpoint import interrupted_then_resumed

MINI = BENCHMARKS.get("synthetic-domains-mini")
# 16x16; photo 8, sketch 4, infrared 2 train images (4:2:1) and 4 test images each;
# a batch of 4 per domain: 2 steps per epoch, in which infrared goes round its data 4 times.
TINY = SyntheticDomains(
    "test-tiny-domains",
    "synthetic-domains-mini at 16x16 with 14 train / 12 test images, batch 4 (tests only).",
    {
        1: dataclasses.replace(
            MINI.protocol(1),
            image_size=16,
            train_size=14,
            test_size=12,
            epochs=2,
            batch_size=4,
            checkpoint_every=1,
        )
    },
)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> SyntheticDomains:
    monkeypatch.setitem(BENCHMARKS._entries, TINY.name, TINY)
    torch.set_num_threads(1)
    return TINY


def spec(architecture: str = "hard-sharing", weighting: str = "equal") -> dict[str, Any]:
    return {
        "benchmark": TINY.name,
        "protocol_version": 1,
        "architecture": {"name": architecture, "backbone": "small-cnn"},
        "weighting": {"name": weighting},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }


def split(sizes: tuple[int, ...], size: int = 8) -> dict[str, torch.Tensor]:
    """A multi-input split whose pixels say (task, row): task t's row i is all t * 100 + i."""
    data = {}
    for t, (task, n) in enumerate(zip(TASKS, sizes, strict=True)):
        values = torch.arange(n, dtype=torch.float32) + 100 * t
        data[image_key(task.name)] = values.view(n, 1, 1, 1).expand(n, 3, size, size).clone()
        data[task.name] = torch.arange(n) % task.num_classes
    return data


def test_domain_sizes_share_the_split_and_refuse_a_remainder() -> None:
    assert domain_sizes("train", 1792) == (1024, 512, 256)
    assert domain_sizes("test", 768) == (256, 256, 256)
    with pytest.raises(ValueError, match="train split of 15 images cannot be shared out 4:2:1"):
        domain_sizes("train", 15)


def test_a_malformed_split_is_one_line_naming_the_task() -> None:
    data = split((3, 2, 2))
    del data["sketch.image"]
    with pytest.raises(
        ValueError, match=re.escape("needs 'sketch.image' and 'sketch' for every task")
    ):
        split_sizes(data, TASKS)
    data = split((3, 2, 2))
    data["infrared"] = data["infrared"][:1]
    with pytest.raises(ValueError, match="task 'infrared': 2 images but 1 targets"):
        split_sizes(data, TASKS)


def test_rows_of_a_concatenated_batch_follow_the_task_order() -> None:
    batches = TaskBatches(TASKS, (3, 2, 2), batch_size=3)
    batch = batches.batch(
        split((3, 2, 2)), [torch.tensor([2, 0]), torch.tensor([1]), torch.tensor([0, 1, 1])]
    )
    # The image rows are task 0's rows 2 and 0, task 1's row 1, task 2's rows 0, 1, 1.
    assert batch["image"][:, 0, 0, 0].tolist() == [2, 0, 101, 200, 201, 201]
    assert task_rows(batch, TASKS) == [slice(0, 2), slice(2, 3), slice(3, 6)]
    outputs = {"photo": torch.arange(6.0), "sketch/aux": torch.arange(6.0) * 10}
    photo, sketch, _ = task_outputs(outputs, batch, TASKS, multi_input=True)
    assert photo["photo"].tolist() == [0, 1] and sketch["sketch/aux"].tolist() == [20]
    batch["sketch"] = batch["sketch"][:0]
    with pytest.raises(ValueError, match="batch of 6 images has 5 targets over its tasks"):
        task_rows(batch, TASKS)


def test_an_epoch_is_the_largest_tasks_batches_and_smaller_tasks_cycle() -> None:
    batches = TaskBatches(TASKS, (12, 4, 6), batch_size=4)
    assert batches.steps == 3
    streams = batches.epoch(torch.Generator().manual_seed(0), "cpu")
    drawn = [batches.indices(streams, step) for step in range(batches.steps)]
    assert all(len(i) == 4 for step in drawn for i in step)  # every batch full
    counts = [Counter(int(i) for step in drawn for i in step[t]) for t in range(3)]
    assert counts[0] == Counter(range(12))  # the largest: each row once
    assert counts[1] == Counter({i: 3 for i in range(4)})  # 4 rows cycled 3 times
    assert counts[2] == Counter({i: 2 for i in range(6)})
    # Each pass of the smallest task is a permutation of its rows.
    assert all(sorted(step[1].tolist()) == [0, 1, 2, 3] for step in drawn)
    again = batches.epoch(torch.Generator().manual_seed(0), "cpu")
    assert all(torch.equal(a, b) for a, b in zip(streams, again, strict=True))


class Halves:
    """A data-parallel worker's sharding, without a process group."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        return torch.tensor_split(index, 2)[self.rank]


def test_data_parallel_workers_take_their_half_of_every_tasks_rows() -> None:
    data = split((8, 4, 2))
    batches = TaskBatches.of(data, TASKS, 4)
    streams = batches.epoch(torch.Generator().manual_seed(1), "cpu")
    whole, _ = task_batches(batches, data, streams, 1, 0, (0, 0, 1), None)
    parts = [task_batches(batches, data, streams, 1, 2, (0, 0, 1), Halves(r)) for r in (0, 1)]  # type: ignore[arg-type]
    for task in TASKS:
        rows = torch.cat([b[task.name] for b, _ in parts])
        assert torch.equal(rows, whole[task.name])
    assert [len(b["image"]) for b, _ in parts] == [6, 6]
    # Two further batches for a double-sampling method, sharded the same way.
    assert [len(sample["image"]) for sample in parts[0][1]] == [6, 6]


def test_each_tasks_loss_reads_exactly_its_own_rows() -> None:
    torch.manual_seed(0)
    model = model_from_spec({"name": "hard-sharing", "backbone": "small-cnn"}, MINI).eval()
    weighting = WEIGHTINGS.get("equal")(len(TASKS))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    step = TrainingStep(model, weighting, optimizer, TASKS, "cpu", multi_input=True)
    image = torch.randn(9, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    targets = {
        "photo": torch.tensor([0, 1, 2, 3]),
        "sketch": torch.tensor([3, 2]),
        "infrared": torch.tensor([1, 0, 3]),
    }
    batch = {"image": image, **targets}
    losses = step._forward(batch).losses
    _, outputs = model(image)
    own = {"photo": slice(0, 4), "sketch": slice(4, 6), "infrared": slice(6, 9)}
    for t, task in enumerate(TASKS):
        expected = torch.nn.functional.cross_entropy(
            outputs[task.name][own[task.name]], targets[task.name]
        )
        torch.testing.assert_close(losses[t], expected)
        # The first rows (a single-input reading) would give another loss.
        first = outputs[task.name][: len(targets[task.name])]
        wrong = torch.nn.functional.cross_entropy(first, targets[task.name])
        assert task.name == "photo" or abs(float(wrong.detach() - expected.detach())) > 1e-4


def test_evaluation_counts_each_tasks_own_test_images() -> None:
    data = split((5, 3, 2))
    seen = [
        (len(image), sorted(t)) for image, t in evaluation_batches(data, TASKS, 4, multi_input=True)
    ]
    assert seen == [(4, ["photo"]), (1, ["photo"]), (3, ["sketch"]), (2, ["infrared"])]

    class Oracle(torch.nn.Module):
        """Right on photo's rows (the row value mod 4), class 0 for the others."""

        def forward(self, image: torch.Tensor) -> tuple[None, dict[str, torch.Tensor]]:
            value = image[:, 0, 0, 0].long()
            right = torch.nn.functional.one_hot(value % 4, 4).float()
            zero = torch.nn.functional.one_hot(torch.zeros_like(value), 4).float()
            return None, {"photo": right, "sketch": zero, "infrared": zero}

    metrics = evaluate(Oracle(), TINY, TINY.protocol(1), "cpu", data, batch_size=4)  # type: ignore[arg-type]
    assert metrics["photo"]["accuracy"] == 1.0
    # Targets are row mod 4: sketch's 3 rows are 0, 1, 2 (1 of 3 is 0); infrared's 0, 1.
    assert metrics["sketch"]["accuracy"] == pytest.approx(1 / 3)
    assert metrics["infrared"]["accuracy"] == 0.5


def test_a_multi_input_job_trains_on_per_task_batches(
    tiny: SyntheticDomains, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_split = tiny.load("train", tiny.protocol(1))
    assert split_sizes(train_split, TASKS) == (8, 4, 2)
    batches: list[dict[str, torch.Tensor]] = []
    call = TrainingStep.__call__

    def spy(self: TrainingStep, batch: dict[str, torch.Tensor], *rest: Any) -> Any:
        batches.append(batch)
        return call(self, batch, *rest)

    monkeypatch.setattr(TrainingStep, "__call__", spy)
    first = train(spec(), seed=5)
    assert len(batches) == 2 * 2  # 2 epochs of ceil(8 / 4) steps
    drawn: list[Counter[int]] = [Counter(), Counter(), Counter()]
    for batch in batches:
        assert batch["image"].shape == (12, 3, 16, 16)
        for t, (task, rows) in enumerate(zip(TASKS, task_rows(batch, TASKS), strict=True)):
            images = train_split[image_key(task.name)]
            # Every row of task t's part is one of task t's own images, with its own label.
            for image, label in zip(batch["image"][rows], batch[task.name], strict=True):
                [i] = [i for i in range(len(images)) if torch.equal(images[i], image)]
                assert int(train_split[task.name][i]) == int(label)
                drawn[t][i] += 1
    # Over 2 epochs: photo's 8 images twice each, infrared's 2 images 8 times each.
    assert drawn[0] == Counter({i: 2 for i in range(8)})
    assert drawn[2] == Counter({0: 8, 1: 8})
    again = train(spec(), seed=5)
    other = train(spec(), seed=6)
    assert first.metrics == again.metrics and first.curves == again.curves
    assert first.curves != other.curves
    assert first.flops == again.flops and first.flops is not None and first.flops > 0


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_every_architecture_trains_on_a_multi_input_benchmark(
    architecture: str, tiny: SyntheticDomains
) -> None:
    result = train(spec(architecture), seed=0)
    assert set(result.metrics) == set(DOMAINS)
    assert all(np.isfinite(v) for m in result.metrics.values() for v in m.values())
    assert {(c.epoch, c.task) for c in result.curves if c.name == "loss"} == {
        (e, d) for e in range(2) for d in DOMAINS
    }


# Auto-λ: a bilevel method's meta batches, per task, from each task's validation part.
@pytest.mark.parametrize("weighting", ["pcgrad", "mgda-ub", "sdmgrad", "auto-lambda"])
def test_gradient_double_sampling_and_bilevel_methods_train_on_a_multi_input_benchmark(
    weighting: str, tiny: SyntheticDomains
) -> None:
    result = train(spec("hard-sharing", weighting), seed=0)
    assert all(np.isfinite(v) for m in result.metrics.values() for v in m.values())


def test_a_resumed_multi_input_run_is_bit_identical(tiny: SyntheticDomains, tmp_path: Path) -> None:
    whole = train(spec(), 3)
    resumed = interrupted_then_resumed(spec(), 3, 2, tmp_path / "checkpoint.pt")
    assert resumed.metrics == whole.metrics and resumed.curves == whole.curves


def test_tuning_carves_a_validation_part_from_each_tasks_own_images(
    tiny: SyntheticDomains,
) -> None:
    protocol = dataclasses.replace(tiny.protocol(1), train_size=28, validation_fraction=0.25)
    whole = tiny.load("train", protocol)
    fit, validation = tuning_data(tiny, protocol)
    assert split_sizes(validation, TASKS) == (4, 2, 1)  # round(N_t / 4) of 16, 8, 4
    assert split_sizes(fit, TASKS) == (12, 6, 3)
    for task in TASKS:
        key = image_key(task.name)
        parts = torch.cat([fit[key], validation[key]])
        # Together the two parts are the task's images, each once.
        assert sorted(parts.flatten(1).sum(1).tolist()) == sorted(
            whole[key].flatten(1).sum(1).tolist()
        )
