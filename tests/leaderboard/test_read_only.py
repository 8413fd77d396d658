"""The site's engine reads and cannot write: refused by a statement filter and by the database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select, text

from db.models import Role, Submission
from db.queue import store_submission
from db.session import (
    ReadOnlyError,
    engine,
    read_only_engine,
    read_only_session_factory,
    transaction,
)


def stored(url: str) -> None:
    with transaction(url) as session:
        store_submission(
            session,
            spec={"name": "m", "benchmark": "b", "protocol_version": 1,
                  "architecture": {"name": "hard-sharing", "backbone": "small-cnn"},
                  "weighting": {"name": "equal"}, "optimizer": {"name": "adam"}},
            spec_hash="a" * 64, source="name: m", role=Role.METHOD,
        )  # fmt: skip


def test_reads_work_and_writes_are_refused(database_url: str) -> None:
    stored(database_url)
    factory = read_only_session_factory(database_url)
    try:
        with factory() as session:
            assert session.scalars(select(Submission.name)).all() == ["m"]
            with pytest.raises(ReadOnlyError, match="UPDATE statement refused"):
                session.execute(sa.update(Submission).values(name="x"))
            session.rollback()
            with pytest.raises(ReadOnlyError, match="INSERT statement refused"):
                session.add(
                    Submission(
                        spec_hash="b" * 64,
                        name="n",
                        benchmark="b",
                        protocol_version=1,
                        architecture="a",
                        backbone="b",
                        weighting="w",
                        optimizer="o",
                        role=Role.METHOD,
                        spec={},
                    )
                )
                session.flush()
            session.rollback()
            for statement in (
                "DELETE FROM submissions",
                "DROP TABLE submissions",
                "CREATE TABLE t (x INTEGER)",
                "  \n(delete from submissions)",
            ):
                with pytest.raises(ReadOnlyError):
                    session.execute(text(statement))
                session.rollback()
        # Under the filter, the database itself refuses: the raw driver connection writes.
        with read_only_engine(database_url).connect() as connection:
            cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            with pytest.raises(Exception, match=r"(?i)read.?only"):
                cursor.execute("DELETE FROM submissions")
        with transaction(database_url) as session:
            assert session.scalars(select(Submission.name)).all() == ["m"]
    finally:
        read_only_engine(database_url).dispose()


def test_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(sa.exc.OperationalError), read_only_engine(f"sqlite:///{missing}").connect():
        pass
    assert not missing.exists()

    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    factory = read_only_session_factory(f"sqlite:///{empty}")
    with pytest.raises(sa.exc.OperationalError, match="no such table"), factory() as session:
        session.execute(select(Submission.id))
    assert sqlite3.connect(empty).execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_path_with_odd_characters_opens(tmp_path: Path) -> None:
    path = tmp_path / "a dir #1 %20" / "db.sqlite"
    path.parent.mkdir()
    url = sa.URL.create("sqlite", database=str(path)).render_as_string()
    engine(url)
    stored(url)
    with read_only_session_factory(url)() as session:
        assert session.scalars(select(Submission.name)).all() == ["m"]


def test_only_the_submit_page_reaches_a_writer() -> None:
    """Every module of the site reads through the read-only engine; the Submit page alone
    stores, and only through `submissions.intake` (whose one writer is `submit_spec`)."""
    import ast

    root = Path(__file__).resolve().parents[2] / "leaderboard"
    writers = {"engine", "session_factory", "transaction"}
    reached: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {a.name for a in node.names}
                if node.module == "db.session" and names & writers:
                    reached.setdefault(str(path.relative_to(root)), set()).update(names & writers)
                if node.module.startswith("submissions") or node.module.startswith("runners"):
                    reached.setdefault(str(path.relative_to(root)), set()).add(
                        f"{node.module}: {', '.join(sorted(names))}"
                    )
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in {"submissions", "runners", "sqlite3"}:
                        reached.setdefault(str(path.relative_to(root)), set()).add(alias.name)
    assert reached == {"views/submit.py": {"submissions: intake"}}
