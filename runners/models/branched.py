"""Branched multi-task networks: a tree of backbone stages, stated in the spec."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import nn

from runners.models.base import ARCHITECTURES, BackboneChoice, Encoder, Memory, MultiTaskModel
from runners.models.heads import HeadWidth, make_head
from runners.tasks import Task

BranchPoints = Annotated[
    dict[str, Annotated[int, Field(ge=0, le=64)]],
    Field(
        max_length=64,
        description="task -> the number of backbone stages it shares before branching off;"
        " a task not listed shares them all",
    ),
]


@ARCHITECTURES.register("branched")
class Branched(MultiTaskModel):
    """Branched multi-task network (Lu et al., CVPR 2017; Vandenhende et al., BMVC 2019).

    `branch_points[t] = k`: task t runs the first k stages of the backbone
    on the trunk, shared with every task whose branch point is k or later,
    and the remaining stages on a copy of its own; tasks that branch at the
    same stage share up to there.  So the spec states a tree: {a: 1, b: 3,
    c: 3} on a 3-stage backbone shares stage 1 among all tasks, stages 2-3
    between b and c, and gives a its own stages 2-3.  All tasks at the last
    stage is hard parameter sharing; at least two tasks must share a stage
    (no sharing at all is the single-task architecture).

    The shared representation is the trunk's output when every task branches
    at the same stage k >= 1; otherwise there is none (the tree forks at
    several stages).
    """

    def __init__(
        self,
        tasks: tuple[Task, ...],
        backbone: str | BackboneChoice,
        *,
        head_width: HeadWidth = 16,
        branch_points: BranchPoints = {},  # noqa: B006  (read, never mutated)
    ):
        super().__init__(tasks, backbone)
        names = tuple(t.name for t in tasks)
        problems = self.check(names, self.backbone.encoder_type, {"branch_points": branch_points})
        if problems:
            raise ValueError("; ".join(f"{field}: {message}" for field, message in problems))
        n = self.backbone.encoder_type.num_stages
        self.points = {name: branch_points.get(name, n) for name in names}
        trunk_depth = max(self.points.values())
        self.trunk = self.backbone.build()
        self.trunk.keep_stages(0, trunk_depth)
        self.branches = nn.ModuleDict()
        for name, point in self.points.items():
            if point < n:
                branch = self.backbone.build()
                branch.keep_stages(point, n)
                self.branches[name] = branch
        self.heads = nn.ModuleDict(
            {
                t.name: make_head(t, self.trunk.out_channels, head_width, self.trunk.stride)
                for t in tasks
            }
        )

    @classmethod
    def check(
        cls, task_names: tuple[str, ...], backbone: type[Encoder], params: Mapping[str, Any]
    ) -> list[tuple[str, str]]:
        problems = []
        n = backbone.num_stages
        for task, point in params.get("branch_points", {}).items():
            if task not in task_names:
                close = difflib.get_close_matches(task, task_names, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(
                    (
                        f"branch_points.{task}",
                        f"the benchmark has no task {task!r}"
                        f" (its tasks: {', '.join(task_names)}){hint}",
                    )
                )
            elif point > n:
                problems.append(
                    (
                        f"branch_points.{task}",
                        f"{point} stages: the backbone has {n}, so a branch point is 0 to {n}",
                    )
                )
        points = [params.get("branch_points", {}).get(t, n) for t in task_names]
        if len(task_names) > 1 and sum(p >= 1 for p in points) < 2:
            problems.append(
                (
                    "branch_points",
                    "no stage is shared by two tasks: that is the single-task architecture",
                )
            )
        return problems

    @classmethod
    def provides_representation(
        cls, task_names: tuple[str, ...], backbone: type[Encoder], params: Mapping[str, Any]
    ) -> bool:
        # As in `forward`: z exists when every task branches after the same stage k >= 1.
        n = backbone.num_stages
        points = {params.get("branch_points", {}).get(t, n) for t in task_names}
        return len(points) == 1 and min(points) > 0

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        forks = set(self.points.values())
        # The trunk's features and memory after k stages, for every branch point k.
        at: dict[int, tuple[torch.Tensor, Memory]] = {0: (image, [])}
        x = image
        memory: Memory = []
        for s in range(max(forks)):
            x = self.trunk.run_stage(s, x, memory)
            if s + 1 in forks:
                at[s + 1] = (x, list(memory))
        n = self.trunk.num_stages
        outputs = {}
        for task in self.tasks:
            point = self.points[task.name]
            y, y_memory = at[point][0], list(at[point][1])
            for s in range(point, n):
                y = self.branches[task.name].run_stage(s, y, y_memory)  # type: ignore[operator]
            outputs[task.name] = self.heads[task.name](y)
        point = next(iter(forks))
        representation = at[point][0] if len(forks) == 1 and point > 0 else None
        return representation, outputs

    def stage_users(self, stage: int) -> list[str]:
        """The tasks that run trunk stage `stage` (0-based)."""
        return [name for name, point in self.points.items() if point > stage]

    def shared_parameters(self) -> list[nn.Parameter]:
        return [
            p
            for s, module in enumerate(self.trunk.stages)
            if len(self.stage_users(s)) > 1
            for p in module.parameters()
        ]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        alone = [
            p
            for s, module in enumerate(self.trunk.stages)
            if self.stage_users(s) == [task]
            for p in module.parameters()
        ]
        branch = list(self.branches[task].parameters()) if task in self.branches else []
        return [*alone, *branch, *self.heads[task].parameters()]
