"""Schema migrations (Alembic, driven from code): upgrade, current revision, the writers' check.

The migration scripts live in `db/migrations/versions` and ship with the
package; no alembic.ini is read.  Three kinds of database meet this code:

- empty (no tables): writers upgrade it to head on first use (`ensure_current`),
  so `mtlb submit` on a fresh SQLite file needs no set-up step;
- made by the code before migrations (`Base.metadata.create_all`: tables, no
  `alembic_version`): `upgrade` checks that its tables are those of the
  first revision, stamps it there, then upgrades;
- migrated: at head it is used as is; behind head, writers refuse it with
  one line that says to run `mtlb db upgrade`.

An upgrade runs in one transaction that first takes a lock (PostgreSQL: an
advisory lock per schema; SQLite: `BEGIN IMMEDIATE`), so two processes that
find the same empty database do not both create it, and a failed revision
leaves nothing half-applied.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, MetaData, create_engine, event, inspect, text
from sqlalchemy.pool import NullPool

from db.errors import SchemaVersionError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The revision whose schema is what `Base.metadata.create_all` made before migrations existed.
INITIAL = "0001"
VERSION_TABLE = "alembic_version"
UPGRADE_HINT = "run `mtlb db upgrade`"


def alembic_config(
    connection: Connection | None = None, target_metadata: MetaData | None = None
) -> Config:
    """An Alembic `Config` on the packaged scripts; `connection` is what env.py migrates.

    `target_metadata` (default: `db.models.Base.metadata`) is what autogenerate
    compares against.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    if target_metadata is not None:
        config.attributes["target_metadata"] = target_metadata
    return config


def compare_server_default(
    context: MigrationContext,
    _inspected_column: Any,
    _metadata_column: Any,
    inspected_default: str | None,
    _metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Autogenerate's server-default comparison, minus a false difference on SQLite.

    SQLite's `server_default=""` comes back from reflection as `('')`, which
    Alembic's own comparison (it unquotes non-empty strings only) reports as
    a change.  A string default equal to the reflected literal is no change;
    anything else (None) Alembic compares.
    """
    if context.dialect.name != "sqlite" or rendered_metadata_default is None:
        return None
    literal = "'" + rendered_metadata_default.replace("'", "''") + "'"
    return False if inspected_default in (literal, f"({literal})") else None


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The revision this code needs."""
    found = _scripts().get_current_head()
    if found is None:
        raise SchemaVersionError(f"no migration scripts found in {MIGRATIONS}")
    return found


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def _sqlite_migration_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # Take transactions into our hands (the `begin` listener): pysqlite's own
    # would let each CREATE/ALTER commit by itself.
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA busy_timeout = 30000")
    # foreign_keys stays off, as SQLite's batch migrations (copy a table, drop
    # the old one, rename) need: with it on, the drop would cascade or fail.


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE: the write lock at once, before the version is read.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _migration_engine(url: str) -> Engine:
    made = create_engine(url, poolclass=NullPool)
    if made.dialect.name == "sqlite":
        event.listen(made, "connect", _sqlite_migration_connect)
        event.listen(made, "begin", _sqlite_begin)
    return made


@contextmanager
def locked_connection(url: str) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock; committed on success."""
    made = _migration_engine(url)
    try:
        with made.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Per schema, so that databases in other schemas migrate in parallel.
                lock = "SELECT pg_advisory_xact_lock(hashtext('mtlb-migrate:' || current_schema()))"
                connection.execute(text(lock))
            yield connection
    finally:
        made.dispose()


@dataclass(frozen=True)
class State:
    """Where a database stands: `revision` None and `empty` False means made before migrations."""

    revision: str | None
    empty: bool

    @property
    def head(self) -> str:
        return head()

    def describe(self) -> str:
        if self.empty:
            return f"empty database; head is {self.head}"
        if self.revision is None:
            return (
                f"tables made before migrations (no {VERSION_TABLE}); head is {self.head}:"
                f" {UPGRADE_HINT}"
            )
        if self.revision == self.head:
            return f"{self.revision} (head)"
        if not _known(self.revision):
            return f"{self.revision}, unknown to this code (head is {self.head})"
        return f"{self.revision}; head is {self.head}: {UPGRADE_HINT}"


def _state(connection: Connection) -> State:
    # Alembic's own table outlives a downgrade to base: alone, it is still an empty database.
    tables = set(inspect(connection).get_table_names()) - {VERSION_TABLE}
    revision = MigrationContext.configure(connection).get_current_revision()
    return State(revision=revision, empty=not tables)


def current(url: str) -> State:
    """The revision of the database at `url` (read only: nothing is created)."""
    made = create_engine(url, poolclass=NullPool)
    name = made.url.database
    if (
        made.dialect.name == "sqlite"
        and name
        and name != ":memory:"
        and not name.startswith("file:")
        and not Path(name).exists()
    ):
        return State(revision=None, empty=True)  # connecting would create the file
    try:
        with made.connect() as connection:
            return _state(connection)
    finally:
        made.dispose()


def _shape(connection: Connection) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """{table: (column names, index names)}, leaving out Alembic's own table."""
    found = inspect(connection)
    return {
        table: (
            frozenset(c["name"] for c in found.get_columns(table)),
            frozenset(
                str(i["name"])
                for i in found.get_indexes(table)
                if i["name"] and "duplicates_constraint" not in i
            ),
        )
        for table in found.get_table_names()
        if table != VERSION_TABLE
    }


@cache
def _initial_shape() -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """The tables of revision `INITIAL`, made by its own script in a scratch database."""
    made = _migration_engine("sqlite://")
    try:
        with made.begin() as connection:
            command.upgrade(alembic_config(connection), INITIAL)
            return _shape(connection)
    finally:
        made.dispose()


def legacy_differences(connection: Connection) -> list[str]:
    """How the tables differ from revision `INITIAL`'s (tables, columns, indexes); [] if alike."""
    want = _initial_shape()
    have = _shape(connection)
    problems = [f"table {t} missing" for t in sorted(want.keys() - have.keys())]
    problems += [f"unexpected table {t}" for t in sorted(have.keys() - want.keys())]
    for table in sorted(want.keys() & have.keys()):
        (want_columns, want_indexes), (have_columns, have_indexes) = want[table], have[table]
        problems += [f"{table}.{c} missing" for c in sorted(want_columns - have_columns)]
        problems += [f"unexpected column {table}.{c}" for c in sorted(have_columns - want_columns)]
        problems += [f"index {i} missing" for i in sorted(want_indexes - have_indexes)]
        problems += [f"unexpected index {i}" for i in sorted(have_indexes - want_indexes)]
    return problems


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did: from which revision (None: empty or pre-migration) to which."""

    before: str | None
    after: str | None
    # The database was made before migrations and stamped at `INITIAL` first.
    stamped: bool = False


def upgrade(url: str, revision: str = "head") -> Upgrade:
    """Upgrade the database at `url` to `revision`, stamping a pre-migration database first.

    All or nothing: the revisions run in one transaction.  Raises
    `SchemaVersionError` for an unknown revision, or for pre-migration tables
    that are not exactly those of revision `INITIAL` (stamping them would
    lie about the schema).
    """
    with locked_connection(url) as connection:
        return _upgrade(connection, revision)


def _upgrade(connection: Connection, revision: str) -> Upgrade:
    before = _state(connection)
    stamped = False
    if before.revision is None and not before.empty:
        problems = legacy_differences(connection)
        if problems:
            raise SchemaVersionError(
                f"database has tables but no {VERSION_TABLE}, and they are not those of"
                f" revision {INITIAL}, so it cannot be stamped: {'; '.join(problems)}"
            )
        command.stamp(alembic_config(connection), INITIAL)
        stamped = True
    if before.revision is not None and not _known(before.revision):
        raise SchemaVersionError(
            f"database at revision {before.revision}, unknown to this code"
            f" (head is {head()}): it was migrated by a newer version"
        )
    try:
        command.upgrade(alembic_config(connection), revision)
    except CommandError as e:
        raise SchemaVersionError(f"cannot upgrade to {revision!r}: {e}") from None
    after = MigrationContext.configure(connection).get_current_revision()
    return Upgrade(before=before.revision, after=after, stamped=stamped)


def downgrade(url: str, revision: str) -> Upgrade:
    """Downgrade to `revision` ("base": drop every table of the schema), in one transaction."""
    with locked_connection(url) as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        try:
            command.downgrade(alembic_config(connection), revision)
        except CommandError as e:
            raise SchemaVersionError(f"cannot downgrade to {revision!r}: {e}") from None
        after = MigrationContext.configure(connection).get_current_revision()
    return Upgrade(before=before, after=after)


def ensure_current(made: Engine) -> None:
    """The writers' check: an empty database is upgraded to head; anything else not at head
    raises `SchemaVersionError` with one line saying what to do.
    """
    with made.connect() as connection:
        state = _state(connection)
    if state.empty:
        if made.dialect.name == "sqlite" and made.url.database in (None, "", ":memory:"):
            # An in-memory database lives in the engine's own connection: migrate there.
            with made.begin() as connection:
                _upgrade(connection, "head")
        else:
            upgrade(made.url.render_as_string(hide_password=False))
        return
    need = head()
    if state.revision == need:
        return
    if state.revision is None:
        raise SchemaVersionError(
            f"database has tables but no migration history (made before migrations),"
            f" this code needs {need}: {UPGRADE_HINT}"
        )
    if not _known(state.revision):
        raise SchemaVersionError(
            f"database at revision {state.revision}, unknown to this code (it needs {need}):"
            " it was migrated by a newer version"
        )
    raise SchemaVersionError(
        f"database at revision {state.revision}, this code needs {need}: {UPGRADE_HINT}"
    )
