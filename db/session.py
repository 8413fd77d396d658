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
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from db.models import Base

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
    """One engine per URL per process; the schema is created if missing."""
    made = create_engine(url)
    if made.dialect.name == "sqlite":
        event.listen(made, "connect", _sqlite_connect)
    Base.metadata.create_all(made)
    return made


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(engine(database_url(url)), expire_on_commit=False)


@contextmanager
def transaction(url: str | None = None) -> Iterator[Session]:
    """A session whose work is committed at the end, or rolled back whole on error."""
    with session_factory(url).begin() as session:
        yield session
