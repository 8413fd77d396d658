"""The protocol's rules, written once: the validator and the worker refuse alike."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from runners.benchmarks import BENCHMARKS
from runners.protocol_checks import model_cost, model_from_spec, protocol_problems
from runners.train import build, forward_flops
from submissions.spec import validate

SCENES = BENCHMARKS.get("synthetic-scenes")


def spec(version: int, **architecture: Any) -> dict[str, Any]:
    return {
        "spec_version": 1,
        "name": "x",
        "benchmark": "synthetic-scenes",
        "protocol_version": version,
        "architecture": {"name": "hard-sharing", "backbone": "small-cnn", **architecture},
        "weighting": {"name": "graddrop"},
        "optimizer": {"name": "adam", "lr": 1e-3},
    }


def test_a_spec_over_the_flop_limit_is_refused_with_one_line_naming_both_numbers() -> None:
    # Issue 12: 3.9M parameters pass the 5M limit, but 16 experts at twice the width
    # cost 110 times the default model's 0.05 GFLOP per 64x64 image.
    wide = spec(
        1,
        name="mmoe",
        backbone={"name": "small-cnn", "width_multiplier": 2.0},
        num_experts=16,
        head_width=256,
    )
    valid, problems = validate(wide)
    assert valid is None
    assert [str(p) for p in problems] == [
        "architecture: the model needs 5.49 GFLOP per image; synthetic-scenes v1"
        " allows at most 1 GFLOP"
    ]
    count, flops = model_cost(wide["architecture"], SCENES, SCENES.protocol(1))
    assert count < SCENES.protocol(1).max_parameters < flops


def test_the_flop_limit_is_inclusive_and_exact_numbers_show_when_rounding_hides_them() -> None:
    protocol = SCENES.protocol(2)
    section = spec(2)["architecture"]
    _, flops = model_cost(section, SCENES, protocol)
    at_limit = dataclasses.replace(protocol, max_flops=flops)
    assert protocol_problems(spec(2), SCENES, at_limit) == []
    below = dataclasses.replace(protocol, max_flops=flops - 1)
    assert [str(p) for p in protocol_problems(spec(2), SCENES, below)] == [
        f"architecture: the model needs {flops:,} FLOPs per image; synthetic-scenes v2"
        f" allows at most {flops - 1:,} FLOPs"
    ]


@pytest.mark.parametrize("architecture", ["hard-sharing", "mtan", "pad-net"])
def test_flops_counted_on_the_meta_device_equal_those_of_the_real_model(architecture: str) -> None:
    protocol = SCENES.protocol(2)
    section = {"name": architecture, "backbone": "small-cnn"}
    count, flops = model_cost(section, SCENES, protocol)
    model = model_from_spec(section, SCENES)
    assert count == sum(p.numel() for p in model.parameters())
    assert flops == forward_flops(model, torch.zeros(1, 3, *protocol.height_width)) > 0


def test_the_worker_refuses_what_the_validator_refuses_in_the_same_words() -> None:
    # A job carries its spec as data: the worker checks it again, by the same rules.
    bad = spec(2)
    bad["optimizer"]["lr"] = 0.5
    bad["architecture"]["backbone"] = "segnet"
    _, problems = validate(bad)
    expected = [
        "architecture.backbone: 'segnet' is not allowed by synthetic-scenes v2"
        " (allowed: small-cnn)",
        "optimizer.lr: 0.5 exceeds the protocol's maximum of 0.1",
    ]
    assert [str(p) for p in problems] == expected
    with pytest.raises(ValueError) as refused:
        build(bad, SCENES, SCENES.protocol(2))
    assert str(refused.value) == "; ".join(expected)


@pytest.mark.parametrize(
    ("benchmark", "version"),
    [(name, v) for name in BENCHMARKS.names() for v in BENCHMARKS.get(name).protocols],
)
def test_every_hard_sharing_and_single_task_default_fits_every_protocol(
    benchmark: str, version: int
) -> None:
    # The baseline (single-task) and the plainest submission must pass every published
    # version: a limit that refused them would make the benchmark unusable.
    b = BENCHMARKS.get(benchmark)
    protocol = b.protocol(version)
    for backbone in protocol.backbones:
        for architecture in ("single-task", "hard-sharing"):
            section = {"name": architecture, "backbone": backbone}
            count, flops = model_cost(section, b, protocol)
            assert count <= protocol.max_parameters, (architecture, backbone)
            assert flops <= protocol.max_flops, (architecture, backbone)
