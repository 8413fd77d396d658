"""Submitters: recorded with each submission, named safely, held to the operator's quota."""

from __future__ import annotations

import getpass
import json
import os
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from db.models import Job, Submission, utcnow
from db.session import transaction
from submissions.cli import app
from submissions.submit import QUOTA_VARIABLE, SUBMITTER_VARIABLE

runner = CliRunner()

SPEC = """\
spec_version: 1
name: {name}
benchmark: synthetic-scenes
architecture: {{name: hard-sharing, backbone: small-cnn}}
weighting: {{name: dwa, temperature: {temperature}}}
optimizer: {{name: adam, lr: 1.0e-3}}
"""


def temperature(name: str) -> float:
    """One DWA temperature per name: specs that differ in their set-up, not only in name
    (one set-up is stored once, whatever its name)."""
    return 1.0 + zlib.crc32(name.encode()) % 1000 / 1000


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv(SUBMITTER_VARIABLE, raising=False)
    monkeypatch.delenv(QUOTA_VARIABLE, raising=False)
    return f"sqlite:///{tmp_path / 'submitters.sqlite'}"


def spec(directory: Path, name: str) -> str:
    path = directory / f"{name.encode().hex()}.yaml"
    path.write_text(SPEC.format(name=name, temperature=temperature(name)))
    return str(path)


def submit(url: str, *args: str) -> tuple[int, list[str], list[str]]:
    result = runner.invoke(app, ["--database", url, "submit", *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout.splitlines(), result.stderr.splitlines()


def stored(url: str) -> list[tuple[str, str]]:
    with transaction(url) as session:
        return [
            (s.name, s.submitter)
            for s in session.scalars(select(Submission).order_by(Submission.id))
        ]


def job_count(url: str) -> int:
    with transaction(url) as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def test_the_submitter_is_the_option_else_the_environment_else_the_user_name(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert submit(url, "--submitter", "Ada Lovelace", spec(tmp_path, "a"))[0] == 0
    monkeypatch.setenv(SUBMITTER_VARIABLE, "grace")
    assert submit(url, spec(tmp_path, "b"))[0] == 0
    monkeypatch.delenv(SUBMITTER_VARIABLE)
    monkeypatch.setattr(getpass, "getuser", lambda: "os-user")
    assert submit(url, spec(tmp_path, "c"))[0] == 0
    assert stored(url) == [("a", "Ada Lovelace"), ("b", "grace"), ("c", "os-user")]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("", "''"),
        ("   ", "'   '"),
        ("eve\x00", "'eve\\x00'"),
        ("e\nve", "'e\\nve'"),
        ("x" * 101, None),
    ],
)
def test_a_bad_submitter_name_is_refused(
    url: str, tmp_path: Path, name: str, shown: str | None
) -> None:
    code, out, err = submit(url, "--submitter", name, spec(tmp_path, "a"))
    assert code == 1 and out == []
    assert len(err) == 1
    assert err[0].startswith(
        "error: --submitter: a submitter is 1 to 100 printable characters, got"
    )
    if shown is not None:
        assert err[0].endswith(f"got {shown}")
    assert stored(url) == []


def test_without_a_user_name_the_user_id_is_the_submitter(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_user() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_user)
    monkeypatch.setattr(os, "getuid", lambda: 4242, raising=False)
    assert submit(url, spec(tmp_path, "a"))[0] == 0
    monkeypatch.delattr(os, "getuid")
    code, _, err = submit(url, spec(tmp_path, "b"))
    assert code == 1
    assert err == [
        f"error: cannot tell who submits: pass --submitter NAME or set {SUBMITTER_VARIABLE}"
    ]
    assert stored(url) == [("a", "uid-4242")]


def test_the_quota_counts_new_submissions_per_submitter_over_24_hours(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(QUOTA_VARIABLE, "2")
    a, b, c = (spec(tmp_path, n) for n in "abc")
    assert submit(url, "--submitter", "ada", a, b)[0] == 0
    # A duplicate (same content after normalisation, here JSON with defaults written out)
    # is reported, not stored, and does not count.
    same_as_a = tmp_path / "a-again.json"
    same_as_a.write_text(
        json.dumps(
            {
                "optimizer": {"name": "adam", "lr": 0.001, "weight_decay": 0.0},
                "weighting": {"name": "dwa", "temperature": temperature("a")},
                "architecture": {"name": "hard-sharing", "backbone": "small-cnn", "head_width": 16},
                "benchmark": "synthetic-scenes",
                "protocol_version": 2,
                "description": "",
                "name": "a",
                "spec_version": 1,
            }
        )
    )
    code, out, _ = submit(url, "--submitter", "ada", str(same_as_a))
    assert code == 0 and "already submitted as #1 a" in out[0]

    code, out, err = submit(url, "--submitter", "ada", c)
    assert code == 1 and out == []
    assert err == [
        f"{c}: submitter 'ada' has reached the limit of 2 new submission(s) per 24 hours"
        f" (set by the operator: {QUOTA_VARIABLE}); nothing stored"
    ]
    assert stored(url) == [("a", "ada"), ("b", "ada")]

    # Another submitter has a quota of their own.
    assert submit(url, "--submitter", "grace", c)[0] == 0
    # A day later, the first two no longer count.
    with transaction(url) as session:
        for submission in session.scalars(select(Submission)):
            submission.submitted_at = utcnow() - timedelta(hours=25)
    d = spec(tmp_path, "d")
    assert submit(url, "--submitter", "ada", d)[0] == 0
    assert stored(url) == [("a", "ada"), ("b", "ada"), ("c", "grace"), ("d", "ada")]


def test_over_the_quota_nothing_of_the_command_is_stored(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(QUOTA_VARIABLE, "2")
    files = [spec(tmp_path, n) for n in "abc"]
    code, out, err = submit(url, "--submitter", "ada", *files)
    assert code == 1 and out == []  # no "stored as" line for files that were rolled back
    assert len(err) == 1 and err[0].startswith(f"{files[2]}: submitter 'ada' has reached")
    assert stored(url) == [] and job_count(url) == 0


@pytest.mark.parametrize("value", ["", "0"])
def test_no_quota_when_unset_or_zero(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(QUOTA_VARIABLE, value)
    files = [spec(tmp_path, f"s{i}") for i in range(5)]
    assert submit(url, "--submitter", "ada", *files)[0] == 0
    assert len(stored(url)) == 5


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "1e3", "99999999999"])
def test_a_malformed_quota_setting_is_an_error(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(QUOTA_VARIABLE, value)
    code, out, err = submit(url, "--submitter", "ada", spec(tmp_path, "a"))
    assert code == 1 and out == []
    assert err == [
        f"error: {QUOTA_VARIABLE} must be a whole number of submissions per day"
        f" (0 or unset: unlimited), got {value!r}"
    ]
    assert stored(url) == []


def test_status_shows_the_submitter_and_no_markup_from_names(url: str, tmp_path: Path) -> None:
    # Brackets are Rich markup: "[/]" would raise, "[red]" would colour; names are shown as is.
    path = spec(tmp_path, "x[/]")
    assert submit(url, "--submitter", "[red]eve[/red]", path)[0] == 0
    result = runner.invoke(app, ["--database", url, "status"])
    assert result.exit_code == 0, result.output
    assert "x[/]" in result.output and "[red]eve[/red]" in result.output
    assert "3 queued" in result.output
