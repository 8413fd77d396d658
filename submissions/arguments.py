"""Checks of `mtlb`'s own arguments, made before a verb does any work.

Each returns the parsed value or raises `ArgumentProblem`, one line naming
the option and the value, so that bad input never reaches SQLAlchemy, Ray or
the end of a training run as a traceback.  Only the standard library is
imported at module level: `mtlb --help` and `mtlb validate` stay fast.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

# The largest id or count a database integer column holds (SQLite and PostgreSQL BIGINT).
MAX_ID = 2**63 - 1
MAX_VERSION = 10_000  # a protocol version, as a spec's `protocol_version` is bounded
LEASE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A lease longer than this only delays the recovery of a dead dispatcher's jobs.
MAX_LEASE = timedelta(days=7)
# Drivers this project installs; `postgresql://` alone means psycopg2, which it does not.
DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")


# As in db.session (which imports SQLAlchemy); tests/submissions/test_structure.py checks.
URL_VARIABLE = "MTLB_DATABASE_URL"
DEFAULT_URL = "sqlite:///mtlb.sqlite"


def database_url(override: str | None = None) -> str:
    """--database, else $MTLB_DATABASE_URL, else the SQLite file in the working directory."""
    return override or os.environ.get(URL_VARIABLE) or DEFAULT_URL


class ArgumentProblem(ValueError):
    """One line: which argument, what was wrong with it."""


def parse_lease(text: str) -> timedelta:
    """'90s', '10m', '1h', '2d' -> a timedelta from one second to `MAX_LEASE`.

    >>> parse_lease("10m"), parse_lease("90s")
    (datetime.timedelta(seconds=600), datetime.timedelta(seconds=90))
    >>> parse_lease("999999999h")
    Traceback (most recent call last):
    ...
    submissions.arguments.ArgumentProblem: --lease: at most 7 days, got '999999999h'
    """
    found = re.fullmatch(r"([0-9]{1,12})([smhd])", text.strip())
    if found is None or int(found[1]) == 0:
        raise ArgumentProblem(
            f"--lease: expected a positive duration such as 90s, 10m or 1h, got {text!r}"
        )
    length = timedelta(seconds=int(found[1]) * LEASE_UNITS[found[2]])
    if length > MAX_LEASE:
        raise ArgumentProblem(f"--lease: at most {MAX_LEASE.days} days, got {text!r}")
    return length


def database_problem(url: str, source: str) -> str | None:
    """None if `url` names a database this project can open; else one line saying why.

    `source` says where the URL came from (--database, $MTLB_DATABASE_URL, the default).
    Nothing is connected to: a server that does not answer is reported when it is used.
    SQLite URLs are read here without SQLAlchemy (which `mtlb validate` never loads).
    """
    shown = url if len(url) <= 100 else url[:97] + "..."
    found = re.fullmatch(r"([A-Za-z][A-Za-z0-9+._-]*)://(.*)", url, re.DOTALL)
    if found is None:
        return (
            f"{source}: not a database URL: {shown!r}"
            " (expected sqlite:///FILE or postgresql+psycopg://USER@HOST/DATABASE)"
        )
    driver, rest = found[1], found[2]
    if driver not in DRIVERS:
        hint = "; write postgresql+psycopg://..." if driver.startswith("postgres") else ""
        return (
            f"{source}: unsupported database {driver!r}"
            f" (supported: sqlite:///FILE, postgresql+psycopg://USER@HOST/DATABASE){hint}"
        )
    if driver.startswith("sqlite"):
        name = rest.removeprefix("/").split("?")[0]  # sqlite:///relative, sqlite:////absolute
        if rest and not rest.startswith("/"):
            return f"{source}: a SQLite URL has no host: {shown!r} (expected sqlite:///FILE)"
        if name and name != ":memory:" and not name.startswith("file:"):
            folder = Path(name).parent
            if not folder.is_dir():
                return f"{source}: the folder of the SQLite file does not exist: {str(folder)!r}"
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError) as e:
        return f"{source}: not a database URL: {shown!r} ({e})"
    return None


def writable_file(path: Path, option: str) -> Path:
    """`path` if a file can be written there (its folder exists and is writable)."""
    if path.is_dir():
        raise ArgumentProblem(f"{option}: {str(path)!r} is a folder, not a file")
    folder = path.parent
    if not folder.is_dir():
        raise ArgumentProblem(f"{option}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ArgumentProblem(f"{option}: cannot write {str(path)!r}")
    return path
