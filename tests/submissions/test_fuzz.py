"""Property tests: whatever a spec file holds, checking it never raises, and a rejected
submission stores nothing.

The inputs are valid example specs mutated (keys dropped, added, renamed;
values replaced by random JSON-like values with NaN, infinities, huge
integers, deep structures, odd strings) and written as .yaml or .json;
example specs with one value edited by hand into a literal no dumper writes
(tags, anchors, `0x_`, escapes); YAML-like token soup; random text and bytes.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.models import Base
from db.session import transaction
from submissions.cli import app
from submissions.submit import check_file

EXAMPLES = Path(__file__).resolve().parents[2] / "submissions" / "examples"
BASES = [yaml.safe_load(p.read_text()) for p in sorted(EXAMPLES.glob("*.yaml"))]
SECTIONS = ("architecture", "weighting", "optimizer", "scheduler")

FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.sampled_from([0, -1, 2**31, 2**63, 10**9, 10**99]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324]),
    st.text(max_size=30),
    st.text(st.characters(codec="utf-8"), max_size=10),  # incl. control characters
    st.sampled_from(["", " ", "\x00", "\ud800", "[/]", "${HOME}", "$(id)", "'; DROP TABLE x;--"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value} if depth % 2 else [value]
    return value


def typo(name: str, draw: st.DrawFn) -> str:
    """A name with one character dropped, doubled or changed."""
    if not name:
        return "x"
    i = draw(st.integers(0, len(name) - 1))
    how = draw(st.sampled_from(["drop", "double", "change", "case"]))
    if how == "drop":
        return name[:i] + name[i + 1 :]
    if how == "double":
        return name[:i] + name[i] + name[i:]
    if how == "case":
        return name.upper()
    return name[:i] + draw(st.characters(codec="ascii")) + name[i + 1 :]


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(draw(st.sampled_from(BASES))))
    for _ in range(draw(st.integers(1, 3))):
        # Where: the whole spec, or one of its sections.
        target = document
        keys = [k for k in SECTIONS if isinstance(document.get(k), dict)]
        if keys and draw(st.booleans()):
            target = document[draw(st.sampled_from(keys))]
        how = draw(st.sampled_from(["drop", "add", "replace", "rename", "deep"]))
        existing = sorted(target)
        if how == "drop" and existing:
            del target[draw(st.sampled_from(existing))]
        elif how == "add":
            key = draw(st.text(max_size=12) | st.sampled_from(["epochs", "gpus", "seeds"]))
            target[key] = draw(values)
        elif how == "replace" and existing:
            target[draw(st.sampled_from(existing))] = draw(values)
        elif how == "rename" and isinstance(target.get("name"), str):
            target["name"] = typo(target["name"], draw)
        elif how == "deep" and existing:
            target[draw(st.sampled_from(existing))] = nested(draw(st.integers(8, 40)))
    return document


def serialise(document: dict[str, Any], suffix: str, draw: st.DrawFn) -> bytes | None:
    try:
        if suffix == ".json":
            return json.dumps(document, sort_keys=draw(st.booleans())).encode()
        text = yaml.safe_dump(
            document,
            sort_keys=draw(st.booleans()),
            default_flow_style=draw(st.sampled_from([None, True, False])),
            allow_unicode=draw(st.booleans()),
        )
        return text.encode("utf-8")
    except (ValueError, yaml.YAMLError, UnicodeEncodeError):  # an int over 4300 digits, ...
        return None


@st.composite
def spec_files(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".yaml", ".json"]))
    content = serialise(draw(mutated_specs()), suffix, draw)
    assume(content is not None)
    assert content is not None
    return suffix, content


TOKENS = [
    "spec_version: 1\n", "name: x\n", "benchmark: synthetic-scenes\n", "architecture:",
    "weighting:", "optimizer:", "name:", "lr:", "{", "}", "[", "]", ", ", ": ", "- ", "\n",
    "  ", "\t", "'", '"', "&a ", "*a", "!!python/object/apply:os.system ", "!!str ", "! ",
    "!foo ", "<<: ", "? ", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "#",
    "1e999", ".nan", "-.inf", "0x_", "0o7", "1:30", "9" * 200, "1_000", "null", "~", "yes",
    "2001-12-14", "|\n  ", ">\n  ", "\\", "\\u0000", "\\ud800", "NaN", "Infinity", "\ufeff",
    "\x85", "\u2028", "é",
]  # fmt: skip
token_soup = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


# Literals a YAML dumper never writes: odd numbers, tags, anchors, escapes, flow syntax.
RAW_SCALARS = [
    "0x_", "0b_", "-0x_", "0o_", "._", "1:_", "1:30", "1_0", "1e999", "-1e999", ".nan", ".inf",
    "9" * 150, "0x" + "f" * 150, "!!str 1", "!!float 1", "!!int '1'", "!!binary aGk=",
    "!!python/object/apply:os.system ['true']", "!foo 1", "! 1", "&a 1", "*a", "[*a]",
    '"\\0"', '"\\ud800"', '"\\x85"', "'\t'", "{a: 1, a: 2}", "{1: 2}", "{? [1]: 2}",
    "[[[[[[[[[[[[[[1]]]]]]]]]]]]]]", "<<", "2001-12-14", "yes", "~", "|\n  x", "[", "{",
]  # fmt: skip
_LINE = re.compile(r"^( *[^ :#-][^:]*): (.+)$", re.MULTILINE)


@st.composite
def hand_edited_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A spec written as YAML, then one value replaced by a literal from RAW_SCALARS."""
    text = yaml.safe_dump(draw(st.sampled_from(BASES)), default_flow_style=False)
    lines = list(_LINE.finditer(text))
    line = draw(st.sampled_from(lines))
    literal = draw(st.sampled_from(RAW_SCALARS))
    edited = text[: line.start(2)] + literal + text[line.end(2) :]
    return ".yaml", edited.encode()


@st.composite
def raw_files(draw: st.DrawFn) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".yaml", ".json", ".yml", ""]))
    content = draw(
        st.one_of(
            token_soup.map(str.encode),
            st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.binary(max_size=200),
        )
    )
    return suffix, content


def assert_problems_are_lines(checked: Any, path: Path) -> None:
    assert (checked.spec is None) == bool(checked.problems)
    for line in checked.lines():
        assert line.startswith(f"{path}: ")
        assert "\n" not in line and "\r" not in line and line.isprintable()


@settings(FUZZ, max_examples=300)
@given(file=st.one_of(spec_files(), hand_edited_files(), raw_files()))
def test_checking_any_file_never_raises(file: tuple[str, bytes], tmp_path: Path) -> None:
    suffix, content = file
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content)
    checked = check_file(path)
    assert_problems_are_lines(checked, path)
    if checked.spec is not None:
        # What is accepted is plain, finite, canonical data.
        canonical = json.dumps(checked.spec.normalised, allow_nan=False, sort_keys=True)
        assert json.loads(canonical) == checked.spec.normalised


def row_counts(url: str) -> dict[str, int]:
    with transaction(url) as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


@settings(FUZZ, max_examples=60)
@given(file=st.one_of(spec_files(), hand_edited_files(), raw_files()))
def test_submitting_any_file_never_raises_and_a_rejection_stores_nothing(
    file: tuple[str, bytes], tmp_path: Path
) -> None:
    suffix, content = file
    url = f"sqlite:///{tmp_path / 'fuzz.sqlite'}"  # one database for every example
    path = tmp_path / f"submitted{suffix}"
    path.write_bytes(content)
    before = row_counts(url)
    result = CliRunner().invoke(
        app, ["--database", url, "submit", "--submitter", "fuzz", str(path)]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1)
    if result.exit_code == 1:
        assert row_counts(url) == before
        *problems, summary = result.stderr.splitlines()
        assert problems and summary == f"nothing stored: {len(problems)} problem(s)"
        assert all(line.startswith(f"{path}: ") for line in problems)
    else:
        assert result.stdout.startswith(f"{path}: ")
