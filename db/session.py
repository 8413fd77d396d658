"""Engines and sessions from one setting: the database URL.

`MTLB_DATABASE_URL` (the CLI's `--database` overrides it); by default a
SQLite file `mtlb.sqlite` in the working directory.  PostgreSQL URLs
(`postgresql+psycopg://...`) work unchanged.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

# Re-exported: callers (the CLI) catch it as db.session.SchemaVersionError.
from db.errors import SchemaVersionError as SchemaVersionError

URL_VARIABLE = "MTLB_DATABASE_URL"
DEFAULT_URL = "sqlite:///mtlb.sqlite"


def database_url(override: str | None = None) -> str:
    return override or os.environ.get(URL_VARIABLE) or DEFAULT_URL


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Referential integrity is off by default in SQLite; WAL lets the site
    # read while a dispatcher writes.
    dbapi_connection.execute("PRAGMA foreign_keys = ON")
    dbapi_connection.execute("PRAGMA journal_mode = WAL")
    dbapi_connection.execute("PRAGMA busy_timeout = 30000")
    # Δm's standard deviation needs sqrt, missing from SQLite builds without math functions.
    dbapi_connection.create_function("sqrt", 1, math.sqrt, deterministic=True)


@cache
def engine(url: str) -> Engine:
    """One engine per URL per process, on a database at the schema this code needs.

    An empty database is migrated to head on first use; one at another
    revision, or made before migrations, raises `SchemaVersionError` (one line
    that says to run `mtlb db upgrade`).  See `db.migrate`.
    """
    # Imported here: Alembic is loaded by writers only, not by every `mtlb` start.
    from db.migrate import ensure_current

    made = create_engine(url)
    if made.dialect.name == "sqlite":
        event.listen(made, "connect", _sqlite_connect)
    try:
        ensure_current(made)
    except BaseException:
        made.dispose()
        raise
    return made


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(engine(database_url(url)), expire_on_commit=False)


# What a read-only connection may send: reads, and the statements around them.
READ_ONLY_STATEMENTS = frozenset({"SELECT", "WITH", "PRAGMA", "SHOW", "SET", "BEGIN", "ROLLBACK"})


class ReadOnlyError(PermissionError):
    """A statement other than a read reached a read-only engine."""


def _read_only_url(url: str) -> URL:
    """A SQLite file URL becomes `file:<path>?mode=ro` (opening it never creates it)."""
    parsed = make_url(url)
    name = parsed.database
    if (
        parsed.get_backend_name() != "sqlite"
        or not name
        or name == ":memory:"
        or name.startswith("file:")
    ):
        return parsed
    return parsed.set(
        database=Path(name).resolve().as_uri(),
        query={**parsed.query, "mode": "ro", "uri": "true"},
    )


def _sqlite_read_only_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.execute("PRAGMA query_only = ON")
    dbapi_connection.execute("PRAGMA busy_timeout = 30000")
    dbapi_connection.create_function("sqrt", 1, math.sqrt, deterministic=True)


def _reject_writes(
    _conn: Any, _cursor: Any, statement: str, _parameters: Any, _context: Any, _many: bool
) -> None:
    words = statement.lstrip(" \t\r\n(").split(None, 1)
    keyword = words[0].upper() if words else ""
    if keyword not in READ_ONLY_STATEMENTS:
        refused = keyword or "empty"
        raise ReadOnlyError(f"read-only database connection: {refused} statement refused")


@cache
def read_only_engine(url: str) -> Engine:
    """An engine that can only read: no schema creation, writes refused twice over.

    The statement filter refuses anything but reads before it reaches the
    database; underneath, SQLite opens the file read-only (`mode=ro`, plus
    `PRAGMA query_only`) and PostgreSQL runs read-only transactions.
    """
    parsed = _read_only_url(url)
    if parsed.get_backend_name() == "postgresql":
        made = create_engine(parsed, execution_options={"postgresql_readonly": True})
    else:
        made = create_engine(parsed)
    if made.dialect.name == "sqlite":
        event.listen(made, "connect", _sqlite_read_only_connect)
    event.listen(made, "before_cursor_execute", _reject_writes)
    return made


def read_only_session_factory(url: str | None = None) -> sessionmaker[Session]:
    """Sessions for readers (the site): see `read_only_engine`."""
    return sessionmaker(read_only_engine(database_url(url)), expire_on_commit=False)


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """A session whose work is committed at the end, or rolled back whole on error."""
    with session_factory(url).begin() as session:
        yield session
