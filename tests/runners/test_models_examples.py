"""Every architecture and backbone has a valid example spec; how a spec states its backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from runners.benchmarks import BENCHMARKS
from runners.models import ARCHITECTURES, BACKBONES, BackboneChoice
from submissions.loader import parse
from submissions.spec import validate
from submissions.submit import check_file

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "submissions" / "examples").glob("*.yaml"))
DOCUMENTS = {path: yaml.safe_load(path.read_text()) for path in EXAMPLES}


def backbone_name(value: Any) -> str:
    return value if isinstance(value, str) else str(value["name"])


@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_every_architecture_has_a_valid_example(architecture: str) -> None:
    paths = [p for p, d in DOCUMENTS.items() if d["architecture"]["name"] == architecture]
    assert paths, f"no spec in submissions/examples/ uses {architecture!r}"
    for path in paths:
        assert check_file(path).problems == [], path.name


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_allowed_backbone_has_a_valid_example(backbone: str) -> None:
    allowed_by = [
        f"{name} v{p.version}"
        for name in BENCHMARKS
        for p in BENCHMARKS.get(name).protocols.values()
        if backbone in p.backbones
    ]
    if not allowed_by:
        pytest.skip(
            f"no registered protocol allows {backbone!r} yet: an example could not validate"
        )
    paths = [
        p for p, d in DOCUMENTS.items() if backbone_name(d["architecture"]["backbone"]) == backbone
    ]
    assert paths, f"no spec in submissions/examples/ uses {backbone!r} ({', '.join(allowed_by)})"
    for path in paths:
        assert check_file(path).problems == [], path.name


SPEC = """\
spec_version: 1
name: x
benchmark: synthetic-scenes
architecture: {{name: mtan, backbone: {backbone}}}
weighting: {{name: equal}}
optimizer: {{name: adam, lr: 1e-3}}
"""


def checked(backbone: str) -> tuple[Any, list[str]]:
    spec, problems = validate(parse(SPEC.format(backbone=backbone).encode(), ".yaml"))
    return spec, [str(p) for p in problems]


def test_a_backbone_at_its_defaults_is_normalised_to_its_name() -> None:
    forms = ["small-cnn", "{name: small-cnn}", "{name: small-cnn, width_multiplier: 1.0}"]
    specs = [checked(form)[0] for form in forms]
    assert all(s is not None for s in specs)
    assert {s.normalised["architecture"]["backbone"] for s in specs} == {"small-cnn"}
    assert len({s.spec_hash for s in specs}) == 1


def test_a_backbone_with_parameters_is_normalised_to_the_full_mapping() -> None:
    wide, problems = checked("{width_multiplier: 2, name: small-cnn}")
    assert problems == [] and wide is not None
    assert wide.normalised["architecture"]["backbone"] == {
        "name": "small-cnn",
        "width_multiplier": 2.0,
    }
    assert wide.spec_hash != checked("small-cnn")[0].spec_hash
    assert BackboneChoice.from_spec(wide.normalised["architecture"]["backbone"]).params == {
        "width_multiplier": 2.0
    }


@pytest.mark.parametrize(
    ("backbone", "expected"),
    [
        ("smallcnn", "architecture.backbone: unknown value 'smallcnn'; did you mean 'small-cnn'?"),
        (
            "{name: smallcnn}",
            "architecture.backbone: unknown value 'smallcnn'; did you mean 'small-cnn'?",
        ),
        (
            "{name: small-cnn, width_multiplier: 0}",
            "architecture.backbone.width_multiplier: Input should be greater than 0",
        ),
        ("{name: small-cnn, depth: 3}", "architecture.backbone.depth: unknown field"),
        ("{width_multiplier: 2}", "architecture.backbone.name: missing"),
        (
            "segnet",
            "architecture.backbone: 'segnet' is not allowed by synthetic-scenes v2"
            " (allowed: small-cnn)",
        ),
    ],
)
def test_backbone_problems_name_the_field(backbone: str, expected: str) -> None:
    spec, problems = checked(backbone)
    assert spec is None
    assert any(p.startswith(expected) for p in problems), problems


def test_branch_points_are_checked_against_the_benchmark_and_backbone() -> None:
    text = SPEC.format(backbone="small-cnn").replace(
        "name: mtan,", "name: branched, branch_points: {segmentaton: 1, depth: 4},"
    )
    spec, problems = validate(parse(text.encode(), ".yaml"))
    assert spec is None
    assert [str(p) for p in problems] == [
        "architecture.branch_points.segmentaton: the benchmark has no task 'segmentaton'"
        " (its tasks: segmentation, depth, normal); did you mean 'segmentation'?",
        "architecture.branch_points.depth: 4 stages: the backbone has 3,"
        " so a branch point is 0 to 3",
    ]
