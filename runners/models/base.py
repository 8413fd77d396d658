"""The interfaces of backbones and architectures, and their registries."""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from runners.models.pretrained import load_weights, weights_path
from runners.registry import Registry
from runners.tasks import Task

# What a stage leaves for a later stage of the same backbone (SegNet's max-pool
# indices); whoever runs the stages creates it empty and copies it where a path forks.
Memory = list[Any]


class Encoder(nn.Module):
    """A backbone: image (B, 3, H, W) -> features (B, out_channels, H/stride, W/stride).

    It is a sequence of `stages`, so that architectures that work per stage
    (cross-stitch units, MTAN attention, branch points) can run it stage by
    stage with `run_stage`; `stage_channels[i]` and `stage_strides[i]`
    (relative to the input) describe the output of stage i.  Constructor
    keyword-only arguments are the backbone's spec parameters.
    """

    num_stages: ClassVar[int]
    # File name of the backbone's ImageNet weights in the weights folder
    # (`runners.models.pretrained`); None: there are none.
    weights_file: ClassVar[str | None] = None

    stages: nn.ModuleList
    stage_channels: tuple[int, ...]
    stage_strides: tuple[int, ...]

    @property
    def out_channels(self) -> int:
        return self.stage_channels[-1]

    @property
    def stride(self) -> int:
        return self.stage_strides[-1]

    def run_stage(self, index: int, x: torch.Tensor, memory: Memory) -> torch.Tensor:
        """Stage `index` on the output of the stage before it."""
        out: torch.Tensor = self.stages[index](x)
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        memory: Memory = []
        x = image
        for index in range(len(self.stages)):
            x = self.run_stage(index, x, memory)
        return x

    def keep_stages(self, first: int, stop: int) -> None:
        """Drop the stages outside [first, stop): a trunk or a branch runs only these."""
        for index in range(len(self.stages)):
            if not first <= index < stop:
                self.stages[index] = nn.Identity()

    def load_pretrained(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load ImageNet weights (a state dict as the weights file holds it)."""
        raise ValueError(f"{type(self).__name__} has no pretrained weights")


def scaled(channels: int, width_multiplier: float) -> int:
    """A channel count times the width multiplier, at least 1."""
    return max(1, round(channels * width_multiplier))


BACKBONES: Registry[type[Encoder]] = Registry("backbone")


@dataclass
class _PairedInitialisation:
    seed: int
    built: Counter[str] = field(default_factory=Counter)


_PAIRED: ContextVar[_PairedInitialisation | None] = ContextVar("paired", default=None)


@contextlib.contextmanager
def paired_initialisation(seed: int | None) -> Iterator[None]:
    """Build a model whose components start from the job's seed and their role alone.

    Inside it, the k-th backbone an architecture builds (`BackboneChoice.build`)
    and the head of task t (`make_head`) are each initialised from their own
    generator, seeded by sha256(seed, role) with role `backbone/k` or `head/t/k`,
    whatever else the architecture builds before them.  So at a given seed the
    single-task baseline's first network, hard sharing's encoder, cross-stitch's
    first column and MMoE's first expert start equal, and so does every head of
    the same shape: runs of different submissions at the same seed are paired
    (common random numbers).  A protocol with `paired_initialisation` builds
    every model so; None: the global generator's order, as before.
    """
    token = _PAIRED.set(None if seed is None else _PairedInitialisation(seed))
    try:
        yield
    finally:
        _PAIRED.reset(token)


@contextlib.contextmanager
def component_initialisation(kind: str) -> Iterator[None]:
    """Initialise one component (`backbone` or `head/<task>`) as `paired_initialisation` says.

    Outside it, a no-op.  The global generator is left as it was before the component.
    """
    paired = _PAIRED.get()
    if paired is None:
        yield
        return
    index = paired.built[kind]
    paired.built[kind] += 1
    role = f"{kind}/{index}"
    digest = hashlib.sha256(f"{paired.seed}/{role}".encode()).digest()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int.from_bytes(digest[:8], "big") >> 1)
        yield


@dataclass(frozen=True)
class BackboneChoice:
    """A backbone as a spec chooses it, and whether the protocol asks for ImageNet weights.

    In a spec, `architecture.backbone` is a registered name (the backbone at
    its defaults) or `{name: ..., <parameter>: ...}`; `canonical` is the one
    form of each choice that the normalised spec stores, so that its content
    hash does not depend on how the choice was written.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    pretrained: bool = False

    @classmethod
    def from_spec(
        cls, value: str | Mapping[str, Any], *, pretrained: bool = False
    ) -> BackboneChoice:
        """Parse a spec's value; the registry's parameter model checks the parameters."""
        raw: dict[str, Any] = {}
        if isinstance(value, str):
            name = value
        else:
            name = str(value["name"])
            raw = {k: v for k, v in value.items() if k != "name"}
        params = dict(BACKBONES.parameters(name).model_validate(raw))
        return cls(name, params, pretrained)

    @property
    def encoder_type(self) -> type[Encoder]:
        return BACKBONES.get(self.name)

    def canonical(self) -> str | dict[str, Any]:
        """The name alone when every parameter has its default, else the mapping of all of them."""
        checked = BACKBONES.parameters(self.name).model_validate(dict(self.params))
        params = checked.model_dump(mode="json")
        defaults = BACKBONES.parameters(self.name)().model_dump(mode="json")
        return self.name if params == defaults else {"name": self.name, **params}

    def build(self) -> Encoder:
        """A new encoder, with ImageNet weights when the protocol asks for them."""
        with component_initialisation("backbone"):
            encoder = self.encoder_type(**self.params)
        if self.pretrained:
            path = weights_path(self.name, self.encoder_type.weights_file)
            encoder.load_pretrained(load_weights(path))
        return encoder


class MultiTaskModel(nn.Module):
    """Maps an image to one prediction per task.

    `forward` returns the shared representation z and the predictions.  z is
    a tensor such that every parameter that more than one task depends on is
    before it, and each task's own parameters after it; None when the
    architecture has no such tensor.  Gradient methods use z to take each
    task's gradient cheaply (see `runners.weighting.base`); without it they
    differentiate each task's loss with respect to `shared_parameters()`.

    The predictions may include auxiliary ones keyed `"<task>/aux"` (deep
    supervision, e.g. PAD-Net's initial predictions): `training_loss` adds
    their loss, times `auxiliary_weight`, to their task's loss.  They are not
    evaluated.
    """

    # Architectures whose tasks share no parameters give the single-task baseline.
    single_task: ClassVar[bool] = False
    # Weighting methods this architecture can be trained with; None = all.
    allowed_weightings: ClassVar[frozenset[str] | None] = None
    # Weight of an auxiliary prediction's loss in its task's training loss.
    auxiliary_weight: float = 0.0

    def __init__(self, tasks: tuple[Task, ...], backbone: str | BackboneChoice) -> None:
        super().__init__()
        self.tasks = tasks
        if not isinstance(backbone, BackboneChoice):
            backbone = BackboneChoice(backbone)
        self.backbone = backbone
        self.output_scaling: dict[str, tuple[float, float]] = {}
        self._scaling_hook: Any = None

    def scale_outputs(self, scaling: Mapping[str, tuple[float, float]]) -> None:
        """Read the raw prediction r of each task in `scaling` as offset + scale * r.

        The protocol's `output_scaling`: applied after every forward pass (training,
        evaluation, FLOP counting), to the task's auxiliary prediction too, so that
        losses and metrics see the target's units while the heads start near the
        target's typical value.  The offset and scale are constants, not parameters.
        """
        unknown = sorted(set(scaling) - {t.name for t in self.tasks})
        if unknown:
            raise ValueError(f"output scaling names unknown tasks: {', '.join(unknown)}")
        self.output_scaling = {name: (float(o), float(s)) for name, (o, s) in scaling.items()}
        if self._scaling_hook is None and self.output_scaling:
            self._scaling_hook = self.register_forward_hook(_scaled_outputs)

    @classmethod
    def check(
        cls, task_names: tuple[str, ...], backbone: type[Encoder], params: Mapping[str, Any]
    ) -> list[tuple[str, str]]:
        """Problems of (already typed and bounded) `params` with a benchmark's tasks and a backbone.

        As (parameter, message) pairs.  The spec validator reports them; the
        constructor of an architecture that overrides this raises them.
        """
        return []

    @classmethod
    def provides_representation(
        cls, task_names: tuple[str, ...], backbone: type[Encoder], params: Mapping[str, Any]
    ) -> bool:
        """Whether `forward` returns a shared representation z with these parameters.

        Methods defined on z (MGDA-UB) need it; the spec validator asks here.
        """
        return True

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters that more than one task's loss depends on."""
        raise NotImplementedError

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters that only `task`'s loss depends on."""
        raise NotImplementedError

    def training_loss(
        self, task: Task, outputs: Mapping[str, torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        """`task`'s loss, plus `auxiliary_weight` times its auxiliary prediction's loss if any."""
        loss = task.loss(outputs[task.name], target)
        auxiliary = outputs.get(auxiliary_key(task.name))
        if auxiliary is not None:
            loss = loss + self.auxiliary_weight * task.loss(auxiliary, target)
        return loss


def auxiliary_key(task: str) -> str:
    return f"{task}/aux"


def _scaled_outputs(
    model: nn.Module, args: Any, result: tuple[torch.Tensor | None, dict[str, torch.Tensor]]
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """Forward hook of `MultiTaskModel.scale_outputs`: offset + scale * r per scaled task."""
    representation, outputs = result
    scaling: dict[str, tuple[float, float]] = model.output_scaling  # type: ignore[assignment]
    scaled = dict(outputs)
    for key, raw in outputs.items():
        task = key.removesuffix("/aux")
        if task in scaling:
            offset, scale = scaling[task]
            scaled[key] = raw * scale + offset
    return representation, scaled


ARCHITECTURES: Registry[type[MultiTaskModel]] = Registry("architecture")
