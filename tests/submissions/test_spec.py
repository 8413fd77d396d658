"""The spec language: strict parsing, helpful errors, normalisation and hashing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from runners.models import ARCHITECTURES
from runners.optim import OPTIMIZERS
from runners.weighting import WEIGHTINGS
from submissions import loader
from submissions.loader import MAX_BYTES, SpecError, parse
from submissions.spec import json_schema, validate
from submissions.submit import baseline_document, check_file

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "submissions" / "examples").glob("*.yaml"))

GOOD = """\
spec_version: 1
name: hps-dwa
benchmark: synthetic-scenes
architecture: {name: hard-sharing, backbone: small-cnn}
weighting: {name: dwa, temperature: 2.0}
optimizer: {name: adam, lr: 1e-3}
"""


def problems_of(text: str, suffix: str = ".yaml") -> list[str]:
    try:
        document = parse(text.encode(), suffix)
    except SpecError as e:
        return [str(e)]
    spec, problems = validate(document)
    assert (spec is None) == bool(problems)
    return [str(p) for p in problems]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    checked = check_file(path)
    assert checked.problems == []


def test_examples_cover_the_required_methods() -> None:
    specs = [yaml.safe_load(p.read_text()) for p in EXAMPLES]
    used = {s["weighting"]["name"] for s in specs}
    assert {"equal", "uncertainty", "dwa"} <= used and used & {"pcgrad", "mgda"}
    assert any(ARCHITECTURES.get(s["architecture"]["name"]).single_task for s in specs)


def test_the_baseline_example_is_the_generated_baseline() -> None:
    checked = check_file(EXAMPLES[0].parent / "stl-small-cnn.yaml")
    generated, problems = validate(baseline_document("synthetic-scenes", 2, "small-cnn"))
    assert not problems and generated is not None and checked.spec is not None
    assert checked.spec.spec_hash == generated.spec_hash


def test_good_spec_is_normalised_with_defaults_and_latest_protocol() -> None:
    spec, problems = validate(parse(GOOD.encode(), ".yaml"))
    assert problems == [] and spec is not None
    assert spec.normalised["protocol_version"] == 2
    assert spec.normalised["optimizer"] == {"name": "adam", "lr": 0.001, "weight_decay": 0.0}
    assert spec.normalised["architecture"] == {
        "name": "hard-sharing",
        "backbone": "small-cnn",
        "head_width": 16,
    }
    assert spec.normalised["scheduler"] is None


def test_hash_ignores_key_order_formatting_and_implicit_defaults() -> None:
    a, _ = validate(parse(GOOD.encode(), ".yaml"))
    reordered = json.dumps(
        {
            "optimizer": {"lr": 0.001, "name": "adam", "weight_decay": 0.0},
            "weighting": {"name": "dwa"},
            "architecture": {"backbone": "small-cnn", "name": "hard-sharing", "head_width": 16},
            "benchmark": "synthetic-scenes",
            "protocol_version": 2,
            "name": "hps-dwa",
            "spec_version": 1,
        }
    )
    b, _ = validate(parse(reordered.encode(), ".json"))
    c, _ = validate(parse(GOOD.replace("temperature: 2.0", "temperature: 3.0").encode(), ".yaml"))
    assert a is not None and b is not None and c is not None
    assert a.spec_hash == b.spec_hash != c.spec_hash


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "name: dwa,",
            "name: dwaa,",
            "weighting.name: unknown weighting 'dwaa'; did you mean 'dwa'",
        ),
        (
            "name: hard-sharing",
            "name: hard-shareing",
            "architecture.name: unknown architecture 'hard-shareing'; did you mean 'hard-sharing'",
        ),
        (
            "backbone: small-cnn",
            "backbone: smallcnn",
            "architecture.backbone: unknown value 'smallcnn'; did you mean 'small-cnn'",
        ),
        (
            "synthetic-scenes",
            "synthetic-scene",
            "benchmark: unknown value 'synthetic-scene'; did you mean 'synthetic-scenes'",
        ),
        ("lr: 1e-3", "lr: -1e-3", "optimizer.lr: Input should be greater than 0"),
        ("lr: 1e-3", "lr: '0.001'", "optimizer.lr: Input should be a valid number"),
        ("lr: 1e-3", "lr: .nan", "optimizer.lr: numbers must be finite, got .nan (line 6)"),
        (
            "temperature: 2.0",
            "temperature: .inf",
            "weighting.temperature: numbers must be finite, got .inf (line 5)",
        ),
        ("temperature: 2.0", "temprature: 2.0", "weighting.temprature: unknown field"),
        ("name: hps-dwa", "name: hps-dwa\ncolour: red", "colour: unknown field"),
        ("spec_version: 1\n", "", "spec_version: missing required field"),
        ("lr: 1e-3", "lr: 0.5", "optimizer.lr: 0.5 exceeds the protocol's maximum of 0.1"),
    ],
)
def test_bad_values_name_the_field(old: str, new: str, expected: str) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    problems = problems_of(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_unknown_protocol_version_and_incompatible_weighting() -> None:
    assert problems_of(GOOD + "protocol_version: 7\n") == [
        "protocol_version: synthetic-scenes has no protocol version 7 (known: 1, 2)"
    ]
    stl = GOOD.replace("hard-sharing", "single-task")
    assert problems_of(stl) == [
        "weighting.name: architecture 'single-task' cannot use weighting 'dwa' (allowed: equal)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1, 2", "malformed YAML: while parsing a flow sequence"),
        (
            "!!python/object/apply:os.system ['echo hi']",
            "YAML tags are not allowed: !!python/object/apply:os.system (line 1)",
        ),
        ("a:\n  b: !!str 1\n", "a.b: YAML tags are not allowed: !!str (line 2)"),
        ("a: &x [1, 2]\n", "a: YAML anchors are not allowed: &x (line 1)"),
        ("a: [1, *x]\n", "a.1: YAML aliases are not allowed: *x (line 1)"),
        ("name: a\nname: b\n", "name: duplicate key (line 2)"),
        ("a:\n  b: 1\n  b: 2\n", "a.b: duplicate key (line 3)"),
        ("1: a\n", "keys must be strings, got '1' (line 1)"),
        ("- 1\n- 2\n", "a spec is a mapping of fields, got list"),
        ("a: " + "[" * 20 + "]" * 20, "nesting is deeper than 12 levels (line 1)"),
        ("a: " + "9" * 101, "a: a number of 101 characters; the limit is 100 (line 1)"),
        (
            "a: 010",
            "a: ambiguous number '010': a leading zero means octal in YAML 1.1, decimal in"
            " YAML 1.2; write 10 (or 0o... for octal) (line 1)",
        ),
        ('a: "\\0"', "a: character U+0000 is not allowed in '\\x00' (line 1)"),
    ],
)
@pytest.mark.parametrize("events", ["libyaml", "pure-python"])
def test_hostile_yaml_is_rejected(
    text: str, expected: str, events: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same checks whichever parser produces the events (libyaml when PyYAML has it).
    if events == "pure-python":
        monkeypatch.setattr(loader, "_StrictSafeLoader", loader._PyStrictLoader)
    with pytest.raises(SpecError) as info:
        parse(text.encode(), ".yaml")
    assert expected in str(info.value)


def test_hostile_json_and_bytes_are_rejected() -> None:
    with pytest.raises(SpecError, match="duplicate key"):
        parse(b'{"a": 1, "a": 2}', ".json")
    with pytest.raises(SpecError, match=r"^a\.1: numbers must be finite, got NaN$"):
        parse(b'{"a": [1, NaN]}', ".json")
    with pytest.raises(SpecError, match=r"^a: numbers must be finite, got -Infinity$"):
        parse(b'{"a": -1e999}', ".json")
    with pytest.raises(SpecError, match=r"^nesting is deeper than 12 levels \(line 2\)$"):
        parse(b"{\n" + b'"a": [' * 12, ".json")
    with pytest.raises(SpecError, match=r"^a number of 101 characters; the limit is 100"):
        parse(b'{"a": ' + b"1" * 101 + b"}", ".json")
    with pytest.raises(SpecError, match=r"not UTF-8 \(invalid byte 0xff at offset 3, line 1\)"):
        parse(b"a: \xff", ".yaml")
    with pytest.raises(SpecError, match=f"the limit is {MAX_BYTES}"):
        parse(b"#" * (MAX_BYTES + 1), ".yaml")


def test_json_schema_lists_every_component_and_accepts_the_examples() -> None:
    schema = json_schema()
    text = json.dumps(schema)
    for registry in (ARCHITECTURES, WEIGHTINGS, OPTIMIZERS):
        for name in registry:
            assert f'"{name}"' in text
    for path in EXAMPLES:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    bad: dict[str, Any] = yaml.safe_load(GOOD)
    bad["weighting"]["temperature"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
