"""Escaping and formatting of the site's text."""

from __future__ import annotations

import html
import math
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from db.delta_m import CONVENTIONS
from leaderboard.text import (
    CONVENTION_LABELS,
    HIGHER_IS_BETTER,
    arrow,
    escape_markdown,
    escape_plotly,
    first_line,
    format_mean_std,
    format_time,
    metric_header,
)

HOSTILE = "<script>alert(1)</script> **bold** [x](javascript:alert(1))"


def test_escape_markdown_of_a_hostile_string() -> None:
    assert escape_markdown(HOSTILE) == (
        "&lt;script&gt;alert\\(1\\)&lt;/script&gt; \\*\\*bold\\*\\* "
        "\\[x\\]\\(javascript\\:alert\\(1\\)\\)"
    )


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("# title", "\\# title"),
        ("- item\n1. item", "\\- item\n1\\. item"),
        ("a_b `c` ~~d~~ $x$", "a\\_b \\`c\\` \\~\\~d\\~\\~ \\$x\\$"),
        (":red[x] :smile:", "\\:red\\[x\\] \\:smile\\:"),
        ("Title\n===", "Title\n\\=\\=\\="),
        ("a | b", "a \\| b"),
        ("> quote & <tag>", "&gt; quote &amp; &lt;tag&gt;"),
        ("back\\slash", "back\\\\slash"),
        ("plain words, 42", "plain words, 42"),
    ],
)
def test_escape_markdown_neutralises_each_construct(text: str, escaped: str) -> None:
    assert escape_markdown(text) == escaped


def _unescape(escaped: str) -> str:
    return re.sub(r"\\(.)", r"\1", html.unescape(escaped), flags=re.DOTALL)


@given(st.text())
def test_escape_markdown_loses_nothing_and_leaves_no_tag(text: str) -> None:
    escaped = escape_markdown(text)
    assert "<" not in escaped and ">" not in escaped
    assert _unescape(escaped) == text
    # Every markdown punctuation character is preceded by a backslash.
    for match in re.finditer(r"[`*_{}\[\]()#+\-=.!|~:$]", escaped):
        assert escaped[: match.start()].endswith("\\")


def test_escape_plotly_leaves_no_tag_and_keeps_quotes() -> None:
    assert escape_plotly("<b>x</b> & 'y'") == "&lt;b&gt;x&lt;/b&gt; &amp; 'y'"


@pytest.mark.parametrize(
    ("mean", "std", "text"),
    [
        (30.35027, 6.45999, "+30.35 ± 6.46"),
        (-48.1105, 12.9699, "-48.11 ± 12.97"),
        (2.0, None, "+2.00"),  # one seed: no standard deviation
        (-4.1e-15, 9.9549, "+0.00 ± 9.95"),  # the baseline's own Δm: no "-0.00"
        (-0.004, 0.0, "+0.00 ± 0.00"),
        (None, None, ""),
        (math.nan, 1.0, ""),
        (1.5, math.nan, "+1.50"),
    ],
)
def test_format_mean_std(mean: float | None, std: float | None, text: str) -> None:
    assert format_mean_std(mean, std) == text


def test_format_mean_std_digits() -> None:
    assert format_mean_std(1.23456, 0.98765, digits=3) == "+1.235 ± 0.988"


def test_headers_seeds_and_convention_labels() -> None:
    assert (arrow(True), arrow(False)) == ("↑", "↓")
    assert metric_header("segmentation", "miou", True) == "segmentation miou ↑"
    assert set(CONVENTION_LABELS) == set(HIGHER_IS_BETTER) == set(CONVENTIONS)
    for convention, higher in HIGHER_IS_BETTER.items():
        direction = "higher is better" if higher else "lower is better"
        assert CONVENTION_LABELS[convention].endswith(direction)
        assert CONVENTIONS[convention].endswith(direction)


def test_first_line_of_an_error() -> None:
    assert first_line("\n\n  ValueError: x  \nTraceback") == "ValueError: x"
    assert first_line("") == ""
    assert first_line("y" * 300, limit=10) == "y" * 9 + "…"


def test_format_time_is_utc_to_the_second() -> None:
    naive = datetime(2026, 3, 4, 5, 6, 7, 999)  # SQLite: UTC without its zone
    assert format_time(naive) == "2026-03-04 05:06:07 UTC"
    aware = datetime(2026, 3, 4, 7, 6, 7, tzinfo=timezone(timedelta(hours=2)))  # PostgreSQL
    assert format_time(aware) == "2026-03-04 05:06:07 UTC"
    assert format_time(datetime(2026, 3, 4, tzinfo=UTC)) == "2026-03-04 00:00:00 UTC"
