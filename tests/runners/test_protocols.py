"""Published protocol versions never change: their definitions and results are pinned.

Changing a field of a shipped protocol version silently changes the meaning of
every result stored under it; a change of protocol is a new version.  The
fingerprint covers every field that differs from the Protocol's default, so a
new field added at its default (no behaviour change) keeps the old fingerprints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest
import torch

from runners.benchmarks import BENCHMARKS
from runners.benchmarks.base import Protocol
from runners.train import train

PINNED = {
    ("celeba", 1): "1abd5061836cd505",
    ("cityscapes", 1): "1a16cffbc7186ba5",
    ("nyuv2", 1): "06f18f8cc3aa6265",
    ("synthetic-attributes", 1): "644593cbc1e2ab67",
    ("synthetic-attributes-16", 1): "f0058d9f605fb397",
    ("synthetic-attributes-4", 1): "d1110f3bd39a4ab4",
    ("synthetic-attributes-mini", 1): "5ef376b3458028c2",
    ("synthetic-scenes", 1): "98844093f70447d9",
    ("synthetic-scenes", 2): "e6fc17d85ef683ee",
    ("synthetic-scenes-mini", 1): "a6a7637b546c0820",
    ("synthetic-scenes-mini", 2): "60acab7d4c415359",
    ("synthetic-shapes", 1): "f65c906522494568",
    ("synthetic-shapes-mini", 1): "2adba981f0267367",
}


def fingerprint(protocol: Protocol) -> str:
    """sha256 of the fields that differ from their defaults, as canonical JSON."""
    fields = {}
    for f in dataclasses.fields(protocol):
        value = getattr(protocol, f.name)
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if value != default:
            fields[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    text = json.dumps(fields, sort_keys=True, default=lambda v: dict(v))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def published() -> list[tuple[str, int]]:
    return [(name, v) for name in BENCHMARKS.names() for v in BENCHMARKS.get(name).protocols]


def test_every_published_protocol_is_pinned() -> None:
    assert sorted(published()) == sorted(PINNED), "a new version needs its fingerprint here"


@pytest.mark.parametrize(("benchmark", "version"), sorted(PINNED))
def test_a_published_protocol_is_unchanged(benchmark: str, version: int) -> None:
    protocol = BENCHMARKS.get(benchmark).protocol(version)
    assert fingerprint(protocol) == PINNED[(benchmark, version)], (
        f"{benchmark} v{version} changed: publish the change as a new version instead"
    )


def test_synthetic_scenes_v1_trains_as_it_did_before_v2() -> None:
    # Metrics of hard sharing + equal weighting on the mini v1 protocol, seed 0, one
    # thread, recorded before v2's output scaling and paired initialisation existed:
    # v1's model, initialisation and training are untouched by them.
    torch.set_num_threads(1)
    spec = {
        "benchmark": "synthetic-scenes-mini",
        "protocol_version": 1,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
        "weighting": {"name": "equal"},
        "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0},
    }
    before = {
        "segmentation": {"miou": 0.061737060546875, "pixel_acc": 0.37042236328125},
        "depth": {"abs_err": 3.585212037567544, "rel_err": 0.9006728983225223},
        "normal": {
            "mean_angle": 55.88326434243165,
            "median_angle": 50.44545454545454,
            "within_11_25": 0.001708984375,
            "within_22_5": 0.029083251953125,
            "within_30": 0.0906982421875,
        },
    }
    metrics = train(spec, seed=0).metrics
    for task, values in before.items():
        assert metrics[task] == pytest.approx(values, rel=1e-6), task
