"""Hostile and broken submissions: rejected in one line each, fast, with nothing stored or run.

Every case goes through `mtlb submit` as a submitter would run it.  The
expected lines are exact: the file, the field, the problem (and the line of
the file where the parser knows it).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.models import Base
from db.session import transaction
from runners.benchmarks import Protocol, Resources
from submissions.cli import app
from submissions.spec import SECTIONS
from submissions.submit import check_file

runner = CliRunner()

GOOD = """\
spec_version: 1
name: hps-dwa
benchmark: synthetic-scenes
architecture: {name: hard-sharing, backbone: small-cnn}
weighting: {name: dwa, temperature: 2.0}
optimizer: {name: adam, lr: 1.0e-3}
"""
GOOD_JSON = {
    "spec_version": 1,
    "name": "hps-dwa",
    "benchmark": "synthetic-scenes",
    "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
    "weighting": {"name": "dwa", "temperature": 2.0},
    "optimizer": {"name": "adam", "lr": 0.001},
}


def edit(old: str, new: str) -> bytes:
    assert old in GOOD
    return GOOD.replace(old, new).encode()


def json_with(text: str) -> bytes:
    """GOOD_JSON with `text` (JSON members) spliced in after the first member."""
    body = json.dumps(GOOD_JSON)
    return (
        "{" + '"spec_version": 1, ' + text + ", " + body[len('{"spec_version": 1, ') :]
    ).encode()


def laughs() -> bytes:
    """The billion laughs: nine levels of nine aliases, 10^9 strings once expanded."""
    lines = ['lol0: &lol0 "lol"']
    lines += [f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return (GOOD + "\n".join(lines) + "\n").encode()


MEGABYTE = (GOOD + "description: " + "x" * 1024**2 + "\n").encode()

# (id, file name, content, expected problem lines after "<file>: ")
CASES: list[tuple[str, str, bytes, list[str]]] = [
    (
        "malformed-yaml",
        "s.yaml",
        edit("lr: 1.0e-3}", "lr: 1.0e-3"),
        [
            "malformed YAML: while parsing a flow mapping:"
            " did not find expected ',' or '}' (line 7, column 1)"
        ],
    ),
    (
        "malformed-json",
        "s.json",
        b'{"spec_version": 1,}',
        ["malformed JSON: Expecting property name enclosed in double quotes (line 1, column 20)"],
    ),
    (
        "yaml-tag-python-object",
        "s.yaml",
        b"!!python/object/apply:os.system ['touch pwned']\n",
        ["YAML tags are not allowed: !!python/object/apply:os.system (line 1)"],
    ),
    (
        "yaml-tag-in-a-field",
        "s.yaml",
        edit("lr: 1.0e-3}", "lr: !!python/name:os.system }"),
        ["optimizer.lr: YAML tags are not allowed: !!python/name:os.system (line 6)"],
    ),
    (
        "yaml-tag-local",
        "s.yaml",
        edit("weighting: {name", "weighting: !dwa {name"),
        ["weighting: YAML tags are not allowed: !dwa (line 5)"],
    ),
    (
        "yaml-tag-str",
        "s.yaml",
        edit("name: hps-dwa", "name: !!str hps-dwa"),
        ["name: YAML tags are not allowed: !!str (line 2)"],
    ),
    (
        "billion-laughs",
        "s.yaml",
        laughs(),
        ["lol0: YAML anchors are not allowed: &lol0 (line 7)"],
    ),
    (
        "alias",
        "s.yaml",
        edit("name: hps-dwa", "name: *x"),
        ["name: YAML aliases are not allowed: *x (line 2)"],
    ),
    ("one-megabyte", "s.yaml", MEGABYTE, [f"file is {len(MEGABYTE)} bytes; the limit is 65536"]),
    (
        "deep-yaml",
        "s.yaml",
        (GOOD + "description: " + "[" * 10_000 + "]" * 10_000 + "\n").encode(),
        ["nesting is deeper than 12 levels (line 7)"],
    ),
    (
        "deep-yaml-13",
        "s.yaml",
        (GOOD + "description: " + "[" * 12 + "]" * 12 + "\n").encode(),
        ["description.0.0.0.0.0.0.0.0.0.0.0: nesting is deeper than 12 levels (line 7)"],
    ),
    (
        "deep-json",
        "s.json",
        json_with('"description": ' + "[" * 10_000 + "]" * 10_000),
        ["nesting is deeper than 12 levels (line 1)"],
    ),
    (
        "duplicate-key-yaml",
        "s.yaml",
        (GOOD + "name: again\n").encode(),
        ["name: duplicate key (line 7)"],
    ),
    (
        "duplicate-key-json",
        "s.json",
        json_with('"optimizer": {"name": "adam", "lr": 0.001, "lr": 0.002}'),
        ["optimizer.lr: duplicate key"],
    ),
    (
        "unknown-keys",
        "s.yaml",
        edit("temperature: 2.0}", "temprature: 2.0}\nepochs: 100"),
        ["weighting.temprature: unknown field", "epochs: unknown field"],
    ),
    (
        "unknown-name",
        "s.yaml",
        edit("name: dwa, temperature: 2.0", "name: uncertanty"),
        ["weighting.name: unknown weighting 'uncertanty'; did you mean 'uncertainty'?"],
    ),
    (
        "bool-for-int",
        "s.yaml",
        edit("small-cnn}", "small-cnn, head_width: true}"),
        ["architecture.head_width: Input should be a valid integer"],
    ),
    (
        "string-for-float",
        "s.yaml",
        edit("lr: 1.0e-3", "lr: '0.001'"),
        ["optimizer.lr: Input should be a valid number"],
    ),
    (
        "nan",
        "s.yaml",
        edit("lr: 1.0e-3", "lr: .nan"),
        ["optimizer.lr: numbers must be finite, got .nan (line 6)"],
    ),
    (
        "inf",
        "s.yaml",
        edit("temperature: 2.0", "temperature: .inf"),
        ["weighting.temperature: numbers must be finite, got .inf (line 5)"],
    ),
    (
        "minus-inf",
        "s.yaml",
        edit("lr: 1.0e-3", "lr: -.inf"),
        ["optimizer.lr: numbers must be finite, got -.inf (line 6)"],
    ),
    (
        "overflow-to-inf",
        "s.yaml",
        edit("lr: 1.0e-3", "lr: 1e999"),
        ["optimizer.lr: numbers must be finite, got 1e999 (line 6)"],
    ),
    (
        "nan-json",
        "s.json",
        json_with('"optimizer": {"name": "adam", "lr": NaN}'),
        ["optimizer.lr: numbers must be finite, got NaN"],
    ),
    (
        "infinity-json",
        "s.json",
        json_with('"weighting": {"name": "dwa", "temperature": Infinity}'),
        ["weighting.temperature: numbers must be finite, got Infinity"],
    ),
    (
        "huge-int-literal",
        "s.yaml",
        edit("small-cnn}", "small-cnn, head_width: 1" + "0" * 60_000 + "}"),
        ["architecture.head_width: a number of 60001 characters; the limit is 100 (line 4)"],
    ),
    (
        "huge-int-literal-json",
        "s.json",
        json_with('"protocol_version": 1' + "0" * 60_000),
        ["a number of 60001 characters; the limit is 100 (line 1)"],
    ),
    (
        "unreadable-number",
        "s.yaml",
        # YAML 1.1's resolver took 0x_ for a number its constructor could not read; in 1.2
        # it is a string.
        edit("small-cnn}", "small-cnn, head_width: 0x_}"),
        ["architecture.head_width: Input should be a valid integer"],
    ),
    (
        "negative-lr",
        "s.yaml",
        edit("lr: 1.0e-3", "lr: -1.0e-3"),
        ["optimizer.lr: Input should be greater than 0"],
    ),
    (
        "lr-over-the-protocol",
        "s.yaml",
        edit("lr: 1.0e-3", "lr: 0.5"),
        ["optimizer.lr: 0.5 exceeds the protocol's maximum of 0.1"],
    ),
    (
        "width-out-of-range",
        "s.yaml",
        edit("small-cnn}", "small-cnn, head_width: 1000000000}"),
        ["architecture.head_width: Input should be less than or equal to 256"],
    ),
    (
        "model-over-the-protocol",
        "s.yaml",
        edit("small-cnn}", "small-cnn, head_width: 256}").replace(
            b"synthetic-scenes", b"synthetic-scenes-mini"
        ),
        [
            "architecture: the model has 2,022,330 parameters;"
            " synthetic-scenes-mini v2 allows at most 1,000,000"
        ],
    ),
    (
        "weighting-the-architecture-cannot-use",
        "s.yaml",
        edit("hard-sharing", "single-task"),
        ["weighting.name: architecture 'single-task' cannot use weighting 'dwa' (allowed: equal)"],
    ),
    (
        "unknown-benchmark",
        "s.yaml",
        edit("benchmark: synthetic-scenes", "benchmark: synthetic-scene"),
        [
            "benchmark: unknown value 'synthetic-scene';"
            " did you mean 'synthetic-scenes', 'synthetic-scenes-mini' or 'synthetic-shapes'?"
        ],
    ),
    (
        "unknown-protocol-version",
        "s.yaml",
        (GOOD + "protocol_version: 99\n").encode(),
        ["protocol_version: synthetic-scenes has no protocol version 99 (known: 1, 2)"],
    ),
    (
        "unknown-spec-version",
        "s.yaml",
        edit("spec_version: 1", "spec_version: 2"),
        ["spec_version: unknown value 2; expected 1"],
    ),
    ("not-utf-8", "s.yaml", b"\xff\xfe", ["not UTF-8 (invalid byte 0xff at offset 0, line 1)"]),
    (
        "control-character",
        "s.yaml",
        edit("name: hps-dwa", 'name: "hps\\0dwa"'),
        ["name: character U+0000 is not allowed in 'hps\\x00dwa' (line 2)"],
    ),
    (
        "lone-surrogate-json",
        "s.json",
        json_with('"description": "\\ud800"'),
        ["description: character U+D800 is not allowed in '\\ud800'"],
    ),
    (
        "too-many-values-yaml",
        "s.yaml",
        (GOOD + "authors: [" + "a, " * 2000 + "a]\n").encode(),
        ["authors.973: a spec holds at most 1000 keys and values (line 7)"],
    ),
    (
        "too-many-values-json",
        "s.json",
        json_with('"authors": [' + '"a", ' * 2000 + '"a"]'),
        ["authors.995: a spec holds at most 1000 keys and values"],
    ),
    # YAML 1.1 leftovers: 010 was octal 8, 1:04 sexagesimal 64, `no` False.
    (
        "leading-zero",
        "s.yaml",
        edit("temperature: 2.0", "temperature: 010"),
        [
            "weighting.temperature: ambiguous number '010': a leading zero means octal in YAML"
            " 1.1, decimal in YAML 1.2; write 10 (or 0o... for octal) (line 5)"
        ],
    ),
    (
        "sexagesimal",
        "s.yaml",
        edit("temperature: 2.0", "temperature: 1:04"),
        ["weighting.temperature: Input should be a valid number"],
    ),
    # Invisible and direction-changing characters in what the site shows.
    (
        "right-to-left-override",
        "s.yaml",
        edit("name: hps-dwa", 'name: "hps-\u202edwa"'),
        [
            "name: character U+202E (RIGHT-TO-LEFT OVERRIDE) is not allowed: invisible and"
            " direction-changing characters could make one name look like another"
        ],
    ),
    (
        "zero-width-space",
        "s.yaml",
        edit("name: hps-dwa", "name: hps-dwa\nauthors: [Ada, Ada\u200b]"),
        [
            "authors.1: character U+200B (ZERO WIDTH SPACE) is not allowed: invisible and"
            " direction-changing characters could make one name look like another"
        ],
    ),
    (
        "byte-order-mark-inside",
        "s.json",
        json_with('"description": "a\\ufeffb"'),
        [
            "description: character U+FEFF (ZERO WIDTH NO-BREAK SPACE) is not allowed: invisible"
            " and direction-changing characters could make one name look like another"
        ],
    ),
    ("not-a-mapping", "s.yaml", b"- 1\n- 2\n", ["a spec is a mapping of fields, got list"]),
    ("empty", "s.yaml", b"", ["a spec is a mapping of fields, got NoneType"]),
]


def row_counts(url: str) -> dict[str, int]:
    with transaction(url) as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


@pytest.mark.parametrize(
    ("name", "content", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_is_rejected_in_one_line_with_nothing_stored(
    name: str, content: bytes, expected: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a shell command, had one run, would leave its file
    path = tmp_path / name
    path.write_bytes(content)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    started = time.perf_counter()
    checked = check_file(path)
    assert time.perf_counter() - started < 0.5  # typically a millisecond
    assert checked.spec is None

    result = runner.invoke(app, ["--database", url, "submit", "--submitter", "eve", str(path)])

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # not an uncaught exception
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        *(f"{path}: {line}" for line in expected),
        f"nothing stored: {len(expected)} problem(s)",
    ]
    assert not any(row_counts(url).values())
    assert not (tmp_path / "pwned").exists()


def test_a_directory_is_not_read(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{tmp_path}: not a regular file"]


def test_too_many_problems_are_counted_not_listed(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(GOOD + "".join(f"k{i}: {i}\n" for i in range(300)))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[:2] == [f"{path}: k0: unknown field", f"{path}: k1: unknown field"]
    assert lines[-1] == f"{path}: and 280 more problem(s)"
    assert len(lines) == 21


# Everything the protocol fixes, and the resources of a job: none of it is a spec's to set.
PROTOCOL_FIELDS = sorted(
    {f.name for f in dataclasses.fields(Protocol)} - {"description"}
    | {f.name for f in dataclasses.fields(Resources)}
    | {"gpus", "cpus", "epochs", "seeds", "batch_size", "resources", "max_parameters"}
)


@pytest.mark.parametrize("key", PROTOCOL_FIELDS)
def test_what_the_protocol_fixes_cannot_appear_in_a_spec(key: str) -> None:
    from submissions.loader import parse
    from submissions.spec import validate

    document = parse(GOOD.encode(), ".yaml")
    document[key] = 1
    for section in ("architecture", "weighting", "optimizer"):
        document[section] = {**document[section], key: 1}
    _, problems = validate(document)
    assert sorted(str(p) for p in problems) == sorted(
        [f"{key}: unknown field"]
        + [f"{s}.{key}: unknown field" for s in ("architecture", "weighting", "optimizer")]
    )
    assert set(SECTIONS) >= {"architecture", "weighting", "optimizer"}


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("10", 10),
        ("-0", 0),
        ("+12", 12),
        ("0o17", 15),
        ("0x1f", 31),
        ("1e-3", 0.001),
        (".5", 0.5),
        ("1.", 1.0),
        ("010.5", 10.5),
        ("true", True),
        ("FALSE", False),
        # YAML 1.1 only: strings in YAML 1.2.
        ("1:04", "1:04"),
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("0b101", "0b101"),
        ("1_000", "1_000"),
        ("2001-01-01", "2001-01-01"),
        ("'010'", "010"),
    ],
)
def test_scalars_resolve_as_in_yaml_1_2(literal: str, value: object) -> None:
    from submissions.loader import parse

    parsed = parse(f"a: {literal}\n".encode(), ".yaml")["a"]
    assert parsed == value and type(parsed) is type(value)


def test_a_description_may_break_lines() -> None:
    from submissions.loader import parse
    from submissions.spec import validate

    document = parse(
        edit("name: hps-dwa", "name: hps-dwa\ndescription: |\n  one\n  \ttwo\n"), ".yaml"
    )
    spec, problems = validate(document)
    assert problems == [] and spec is not None
    assert spec.normalised["description"] == "one\n\ttwo\n"
