"""Learning to branch: one column per task, each stage choosing its parent column."""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from runners.models.base import ARCHITECTURES, BackboneChoice, Encoder, Memory, MultiTaskModel
from runners.models.heads import HeadWidth, make_head
from runners.tasks import Task


@ARCHITECTURES.register("ltb")
class LearningToBranch(MultiTaskModel):
    """Learning to Branch (Guo, Lee & Ulbricht, ICML 2020): a tree of backbone stages, learnt.

    A copy of the backbone per task (a column, as in `cross-stitch`).  Before
    every stage s >= 1, column t reads one parent: the output of stage s-1 of
    column j, chosen by learnt logits a[s, t, :],

        x_t^s = sum_j c[s, t, j] x_j^(s-1),

    where c is, in training, a hard Gumbel-softmax sample (one-hot forward,
    the soft gradient backward) at temperature
    tau = temperature / sqrt(1 + (step - warmup_steps) / decay_steps), and in
    evaluation the argmax: a tree in which tasks that read the same column at
    a stage share it.  LibMTL's LTB (`LibMTL/architecture/LTB.py`), with its
    schedule in steps rather than epochs (its tau = (E / 20) / sqrt(e + 1):
    temperature 10 for the 200 epochs of the real protocols): the model
    counts its training steps in a buffer, so a resumed run continues the
    schedule.  During the first `warmup_steps` every column reads the
    softmax mixture of its parents (LibMTL sums them, with no gradient to the
    logits), which starts as their mean and trains the logits.

    The learnt tree can be trained again as a `branched` spec
    (`branched_architecture`), the paper's second phase, when it has the
    form `branched` states: tasks leave one trunk.  The shared representation
    is the concatenation of every column's output before the last stage: a
    task's last choice, its column's last stage and its head are its own.
    """

    def __init__(
        self,
        tasks: tuple[Task, ...],
        backbone: str | BackboneChoice,
        *,
        head_width: HeadWidth = 16,
        temperature: Annotated[
            float, Field(gt=0, le=100, description="Gumbel-softmax temperature after warm-up")
        ] = 10.0,
        decay_steps: Annotated[
            int, Field(ge=1, le=1_000_000, description="steps over which tau falls by sqrt(2)")
        ] = 100,
        warmup_steps: Annotated[
            int, Field(ge=0, le=1_000_000, description="steps with soft parent mixtures")
        ] = 100,
    ):
        super().__init__(tasks, backbone)
        self.head_width = head_width
        self.temperature, self.decay_steps, self.warmup_steps = (
            temperature,
            decay_steps,
            warmup_steps,
        )
        columns = [self.backbone.build() for _ in tasks]
        self.columns = nn.ModuleList(columns)
        self.num_stages = len(columns[0].stages)
        n = len(tasks)
        # logits[s - 1][t]: column t's choice of parent before stage s.
        self.logits = nn.ModuleList(
            [
                nn.ParameterList([nn.Parameter(torch.zeros(n)) for _ in tasks])
                for _ in range(1, self.num_stages)
            ]
        )
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.split = columns[0].stage_channels[-2] if self.num_stages > 1 else 3
        c = columns[0]
        self.heads = nn.ModuleDict(
            {t.name: make_head(t, c.out_channels, head_width, c.stride) for t in tasks}
        )

    steps: torch.Tensor

    def column(self, t: int) -> Encoder:
        encoder: Encoder = self.columns[t]  # type: ignore[assignment]
        return encoder

    def stage_logits(self, stage: int) -> torch.Tensor:
        """(T, T): row t, column t's logits over its parents before `stage` (>= 1)."""
        rows: nn.ParameterList = self.logits[stage - 1]  # type: ignore[assignment]
        return torch.stack(list(rows))

    def choices(self, stage: int) -> torch.Tensor:
        """(T, T): row t, the weights of column t's parents before `stage` (>= 1)."""
        logits = self.stage_logits(stage)
        if not self.training:
            return F.one_hot(logits.argmax(dim=1), logits.shape[1]).to(logits.dtype)
        step = int(self.steps.item())
        if step < self.warmup_steps:
            return F.softmax(logits, dim=1)
        tau = self.temperature / (1 + (step - self.warmup_steps) / self.decay_steps) ** 0.5
        return F.gumbel_softmax(logits, tau=tau, hard=True, dim=1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = len(self.tasks)
        # Each column keeps its own memory (SegNet's pooling indices).
        memories: list[Memory] = [[] for _ in self.tasks]
        outs = [self.column(t).run_stage(0, image, memories[t]) for t in range(n)]
        for s in range(1, self.num_stages - 1):
            outs = self._stage(s, outs, memories)
        representation = torch.cat(outs, dim=1) if self.num_stages > 1 else image
        if self.num_stages > 1:
            c = self.split
            parts = [representation[:, j * c : (j + 1) * c] for j in range(n)]
            outs = self._stage(self.num_stages - 1, parts, memories)
        if self.training:
            self.steps += 1
        return representation, {
            t.name: self.heads[t.name](outs[i]) for i, t in enumerate(self.tasks)
        }

    def _stage(
        self, s: int, parents: list[torch.Tensor], memories: list[Memory]
    ) -> list[torch.Tensor]:
        choice = self.choices(s)
        outs = []
        for t in range(len(self.tasks)):
            x = choice[t, 0] * parents[0]
            for j in range(1, len(parents)):
                x = x + choice[t, j] * parents[j]
            outs.append(self.column(t).run_stage(s, x, memories[t]))
        return outs

    def shared_parameters(self) -> list[nn.Parameter]:
        last = self.num_stages - 1
        early = [
            p
            for s in range(last)
            for t in range(len(self.tasks))
            for p in self.column(t).stages[s].parameters()
        ]
        return [*early, *self.logits[: max(0, last - 1)].parameters()]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        t = [x.name for x in self.tasks].index(task)
        last = self.num_stages - 1
        choice = [self.logits[last - 1][t]] if last > 0 else []  # type: ignore[index]
        return [*choice, *self.column(t).stages[last].parameters(), *self.heads[task].parameters()]

    def paths(self) -> list[list[int]]:
        """paths[t][s]: the column whose stage s task t's prediction runs through (argmax tree)."""
        n, last = len(self.tasks), self.num_stages - 1
        parents = [self.stage_logits(s).argmax(dim=1).tolist() for s in range(1, self.num_stages)]
        paths = []
        for t in range(n):
            path = [t]
            for s in range(last, 0, -1):
                path.append(parents[s - 1][path[-1]])
            paths.append(path[::-1])
        return paths

    def branched_architecture(self) -> dict[str, Any]:
        """The learnt tree as a spec's `branched` architecture section.

        Task t's branch point is the number of leading stages it runs on the
        trunk, the one group of tasks that read the same columns.  Raises
        ValueError for a tree that `branched` cannot state: two groups of
        tasks sharing stages apart from each other, or no stage shared at all.
        """
        names = [t.name for t in self.tasks]
        paths = self.paths()
        points = dict.fromkeys(names, 0)
        for s in range(self.num_stages):
            groups: dict[int, list[str]] = {}
            for name, path in zip(names, paths, strict=True):
                groups.setdefault(path[s], []).append(name)
            shared = [g for g in groups.values() if len(g) > 1]
            if len(shared) > 1:
                raise ValueError(
                    f"the learnt tree has {len(shared)} groups sharing stage {s + 1}"
                    f" ({'; '.join(', '.join(g) for g in shared)}): `branched` states one trunk"
                )
            for name in shared[0] if shared else []:
                points[name] = s + 1
        if all(p == 0 for p in points.values()):
            raise ValueError(
                "the learnt tree shares no stage: that is the single-task architecture"
            )
        n = self.num_stages
        backbone = self.backbone.canonical()
        return {
            "name": "branched",
            "backbone": backbone,
            "head_width": self.head_width,
            "branch_points": {k: v for k, v in points.items() if v != n},
        }
