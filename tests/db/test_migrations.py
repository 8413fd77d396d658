"""Schema migrations: empty to head, head matches the models, down to base, pre-migration
databases, databases behind head, and `mtlb db`; on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from db import migrate
from db.models import Base
from db.session import SchemaVersionError, engine
from submissions.cli import app

runner = CliRunner()

# A revision after the shipped head, as the next version of the code would bring.
NEXT = "t999"
NEXT_SCRIPT = """
import sqlalchemy as sa
from alembic import op

revision = "t999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("extra", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("extra")
"""


def tables(url: str) -> set[str]:
    made = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with made.connect() as connection:
            return set(sa.inspect(connection).get_table_names())
    finally:
        made.dispose()


def version_rows(url: str) -> list[str]:
    made = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with made.connect() as connection:
            query = sa.text(f"SELECT version_num FROM {migrate.VERSION_TABLE}")
            return [row[0] for row in connection.execute(query)]
    finally:
        made.dispose()


def execute(url: str, *statements: str) -> None:
    made = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with made.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))
    finally:
        made.dispose()


def pre_migration(url: str) -> None:
    """A database as `Base.metadata.create_all` made it before migrations: revision 0001's
    tables (checked equal to the committed models when 0001 was written), no alembic_version.
    """
    migrate.upgrade(url, migrate.INITIAL)
    execute(
        url,
        f"DROP TABLE {migrate.VERSION_TABLE}",
        "INSERT INTO campaigns (id, name, reason, created_at)"
        " VALUES (7, 'initial', 'kept', '2026-01-01 00:00:00+00:00')",
    )


@pytest.fixture
def newer_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The shipped migrations plus one more revision (NEXT), as the next release would ship."""
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    shipped_head = migrate.head()
    (scripts / "versions" / f"{NEXT}_extra.py").write_text(NEXT_SCRIPT.format(head=shipped_head))
    monkeypatch.setattr(migrate, "MIGRATIONS", scripts)
    migrate._scripts.cache_clear()
    yield shipped_head
    migrate._scripts.cache_clear()


def test_empty_database_upgrades_to_head_matching_the_models(database_url: str) -> None:
    assert migrate.current(database_url).empty
    done = migrate.upgrade(database_url)
    assert (done.before, done.after, done.stamped) == (None, migrate.head(), False)
    # Every table, alembic_version included, in the URL's schema (for PostgreSQL the
    # search_path one: the inspector lists the default schema only).
    assert tables(database_url) == {*Base.metadata.tables, migrate.VERSION_TABLE}
    assert version_rows(database_url) == [migrate.head()]
    made = sa.create_engine(database_url, poolclass=sa.NullPool)
    with made.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "compare_server_default": migrate.compare_server_default},
        )
        # Non-empty: db.models changed without a migration (scripts/new_migration.py).
        assert compare_metadata(context, Base.metadata) == []
    made.dispose()
    again = migrate.upgrade(database_url)
    assert (again.before, again.after) == (migrate.head(), migrate.head())


def test_downgrade_to_base_leaves_no_tables(database_url: str) -> None:
    migrate.upgrade(database_url)
    done = migrate.downgrade(database_url, "base")
    assert (done.before, done.after) == (migrate.head(), None)
    # Alembic keeps its own (now empty) table; every table of ours is gone.
    assert tables(database_url) == {migrate.VERSION_TABLE}
    assert version_rows(database_url) == []
    assert migrate.upgrade(database_url).after == migrate.head()


def test_concurrent_first_use_migrates_once(database_url: str) -> None:
    results: list[migrate.Upgrade] = []
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            results.append(migrate.upgrade(database_url))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=first_use) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # The lock serialises them: one migrates the empty database, the other finds it done.
    assert sorted((r.before or "", r.after) for r in results) == [
        ("", migrate.head()),
        (migrate.head(), migrate.head()),
    ]


def test_pre_migration_database_is_refused_then_stamped_and_upgraded(database_url: str) -> None:
    pre_migration(database_url)
    state = migrate.current(database_url)
    assert (state.revision, state.empty) == (None, False)
    with pytest.raises(SchemaVersionError, match=r"no migration history.*run `mtlb db upgrade`"):
        engine(database_url)
    result = runner.invoke(app, ["--database", database_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"stamped at {migrate.INITIAL}" in result.output
    assert version_rows(database_url) == [migrate.head()]
    engine(database_url)  # writers accept it now
    made = sa.create_engine(database_url, poolclass=sa.NullPool)
    with made.connect() as connection:
        kept = connection.execute(sa.text("SELECT id, reason FROM campaigns")).all()
    made.dispose()
    assert [tuple(row) for row in kept] == [(7, "kept")]


def test_pre_migration_database_is_stamped_then_upgraded_past_it(
    database_url: str, newer_code: str
) -> None:
    pre_migration(database_url)
    result = runner.invoke(app, ["--database", database_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"tables made before migrations match {migrate.INITIAL}: stamped at {migrate.INITIAL}",
        f"database upgraded from {migrate.INITIAL} to {NEXT}",
    ]
    assert version_rows(database_url) == [NEXT]
    assert "extra" in tables(database_url)


def test_pre_migration_database_with_other_tables_is_not_stamped(database_url: str) -> None:
    pre_migration(database_url)
    execute(database_url, "ALTER TABLE jobs ADD COLUMN note VARCHAR(10)", "DROP TABLE curves")
    with pytest.raises(SchemaVersionError) as raised:
        migrate.upgrade(database_url)
    message = str(raised.value)
    assert "cannot be stamped" in message
    assert "table curves missing" in message
    assert "unexpected column jobs.note" in message
    assert "\n" not in message
    # Nothing written: still no alembic_version.
    assert migrate.VERSION_TABLE not in tables(database_url)


def test_database_behind_head_is_refused_until_upgraded(database_url: str, newer_code: str) -> None:
    migrate.upgrade(database_url, newer_code)  # what the previous release made
    expected = f"database at revision {newer_code}, this code needs {NEXT}: run `mtlb db upgrade`"
    with pytest.raises(SchemaVersionError) as raised:
        engine(database_url)
    assert str(raised.value) == expected
    result = runner.invoke(app, ["--database", database_url, "status"])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {expected}"

    result = runner.invoke(app, ["--database", database_url, "db", "current"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{newer_code}; head is {NEXT}: run `mtlb db upgrade`"
    result = runner.invoke(app, ["--database", database_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"database upgraded from {newer_code} to {NEXT}"
    assert "extra" in tables(database_url)
    engine(database_url)
    result = runner.invoke(app, ["--database", database_url, "status"])
    assert result.exit_code == 0, result.output


def test_database_from_newer_code_is_refused(database_url: str) -> None:
    migrate.upgrade(database_url)
    execute(database_url, f"UPDATE {migrate.VERSION_TABLE} SET version_num = 'f00d'")
    with pytest.raises(SchemaVersionError, match=r"revision f00d, unknown to this code"):
        engine(database_url)
    with pytest.raises(SchemaVersionError, match=r"revision f00d, unknown to this code"):
        migrate.upgrade(database_url)
    result = runner.invoke(app, ["--database", database_url, "db", "upgrade", "--revision", "nope"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")


def test_cli_db_commands_and_first_use(database_url: str) -> None:
    def mtlb(*args: str) -> str:
        result = runner.invoke(app, ["--database", database_url, *args])
        assert result.exit_code == 0, result.output
        return result.output.strip()

    head = migrate.head()
    assert mtlb("db", "current") == f"empty database; head is {head}"
    assert mtlb("db", "upgrade") == f"database upgraded from empty to {head}"
    assert mtlb("db", "upgrade", "--revision", head) == f"database at {head}: nothing to do"
    assert mtlb("db", "current") == f"{head} (head)"


def test_writers_upgrade_an_empty_database_on_first_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    result = runner.invoke(app, ["--database", url, "status"])
    assert result.exit_code == 0, result.output
    assert version_rows(url) == [migrate.head()]


def test_migrations_ship_with_the_package() -> None:
    # The scripts are modules of the db.migrations packages; the template must be package data,
    # or `mtlb` installed from a wheel cannot write the next migration.
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["db"]
    assert (migrate.MIGRATIONS / "script.py.mako").is_file()
    assert "migrations/script.py.mako" in patterns
    for package in (migrate.MIGRATIONS, migrate.MIGRATIONS / "versions"):
        assert (package / "__init__.py").is_file()
