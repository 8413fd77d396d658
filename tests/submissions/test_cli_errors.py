"""Every `mtlb` verb answers bad input with one line and exit status 1 or 2, never a traceback.

Each case is a value that once escaped as a traceback (SQLAlchemy's URL parser,
SQLite's integer overflow, `timedelta` overflow), hung (`ray.init` on an
address where nothing listens) or failed only after all training (`--timings`).
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runners.reach import cluster_problem
from submissions.arguments import ArgumentProblem, parse_lease
from submissions.cli import app

runner = CliRunner()
HUGE = "99999999999999999999"  # > 2**63: SQLite raised OverflowError on it

# Every verb that takes the global --database, with arguments that get it past its own parsing.
VERBS = {
    "validate": ["validate", "x.yaml"],
    "submit": ["submit", "x.yaml"],
    "run": ["run"],
    "status": ["status"],
    "leaderboard": ["leaderboard"],
    "baselines": ["baselines", "synthetic-scenes-mini"],
    "ranking": ["ranking"],
    "schema": ["schema"],
    "rerun": ["rerun", "--campaign", "c", "--reason", "r", "--all"],
    "delta-m": ["delta-m", "--benchmark", "synthetic-scenes", "a.json", "b.json"],
    "reported import": ["reported", "import", "--builtin"],
    "db upgrade": ["db", "upgrade"],
    "db current": ["db", "current"],
}
BAD_DATABASES = {
    "nonsense": "not a database URL",
    "sqlite:////nonexistent/x.sqlite": "folder of the SQLite file does not exist",
    "mysql://u@h/db": "unsupported database 'mysql'",
    "postgresql://u@h/db": "write postgresql+psycopg://",
}


def one_line_error(args: list[str], code: frozenset[int] = frozenset({1, 2})) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code in code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("database", BAD_DATABASES)
def test_a_bad_database_url_is_one_line_at_every_verb(verb: str, database: str) -> None:
    line = one_line_error(["--database", database, *VERBS[verb]], frozenset({1}))
    assert BAD_DATABASES[database] in line and line.startswith("error: --database: ")


def test_a_database_that_does_not_answer_is_one_line() -> None:
    started = time.perf_counter()
    line = one_line_error(
        ["--database", "postgresql+psycopg://u@127.0.0.1:1/db", "status"], frozenset({1})
    )
    assert line.startswith("error: database postgresql+psycopg://u@127.0.0.1:1/db: ")
    assert "refused" in line
    assert time.perf_counter() - started < 10


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'errors.sqlite'}"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["rerun", "--campaign", "c", "--reason", "r", "--submission", HUGE], 2, "--submission"),
        (["run", "--max-jobs", HUGE], 2, "--max-jobs"),
        (["run", "--max-jobs", "0"], 2, "--max-jobs"),
        (["run", "--lease", "99999999999999h"], 1, "--lease: expected a positive duration"),
        (["run", "--lease", "999999999h"], 1, "--lease: at most 7 days"),
        (["run", "--lease", "8d"], 1, "--lease: at most 7 days"),
        (["run", "--address", "127.0.0.1:1"], 1, "127.0.0.1:1 cannot be reached"),
        (["run", "--address", "nowhere"], 1, "--address: expected HOST:PORT"),
        (["run", "--timings", "/no/dir/f"], 1, "--timings: folder '/no/dir' does not exist"),
        (["run", "--gpus-per-job", "nan"], 1, "--gpus-per-job"),
        (["ranking", "--version", HUGE], 2, "--version"),
        (["baselines", "synthetic-scenes-mini", "--version", HUGE], 2, "--version"),
        (["rerun", "--campaign", "c", "--reason", "r", "--all", "--cycles", HUGE], 2, "--cycles"),
        (["rerun", "--campaign", "c", "--reason", "r", "--all", "--seeds", HUGE], 1, "--seeds"),
        (
            ["rerun", "--campaign", "c", "--reason", "r", "--all", "--every", HUGE + "d"],
            1,
            "--every",
        ),
        (
            [
                "rerun",
                "--campaign",
                "c",
                "--reason",
                "r",
                "--all",
                "--cycles",
                "1",
                "--address",
                "127.0.0.1:1",
            ],
            1,
            "cannot be reached",
        ),
        (["leaderboard", "--port", "70000"], 2, "--port"),
        (["nosuchverb"], 2, "No such command"),
    ],
)
def test_bad_arguments_are_one_line(url: str, args: list[str], code: int, words: str) -> None:
    line = one_line_error(["--database", url, *args], {code})
    assert words in line


def test_parse_lease_bounds() -> None:
    assert parse_lease("7d") == timedelta(days=7)
    assert parse_lease(" 1s ") == timedelta(seconds=1)
    for bad in ("0m", "10", "m", "1.5h", "-1h", "10w", "１h", "604801s"):
        with pytest.raises(ArgumentProblem, match="--lease"):
            parse_lease(bad)


def test_cluster_problem_answers_quickly_where_nothing_listens() -> None:
    started = time.perf_counter()
    problem = cluster_problem("127.0.0.1:1")
    assert problem is not None and "cannot be reached" in problem
    assert cluster_problem("ray://127.0.0.1:1") is not None
    assert cluster_problem("127.0.0.1:0") is not None  # port out of range
    assert cluster_problem("auto") is None
    assert time.perf_counter() - started < 10
