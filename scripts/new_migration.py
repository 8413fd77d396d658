"""Write the next migration: what `db.models` has that the migrations' head does not.

    .venv/bin/python scripts/new_migration.py -m "job leases, tunings"

Alembic's autogenerate compares the models with a scratch SQLite database
upgraded to head, and writes db/migrations/versions/<NNNN>_<message>.py
(the next number).  Review it before committing: autogenerate does not see
renames (it writes a drop and an add), nor data that must move; then run
tests/db/test_migrations.py, which checks head against the models on SQLite
and PostgreSQL.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from db import migrate
from db.models import Base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-m", "--message", required=True, help="what the migration changes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'head.sqlite'}"
        migrate.upgrade(url)
        with migrate.locked_connection(url) as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "compare_server_default": migrate.compare_server_default,
                },
            )
            if not compare_metadata(context, Base.metadata):
                print(f"db.models matches head ({migrate.head()}): nothing to write")
                return 1
            number = f"{int(migrate.head()) + 1:04d}"
            written = command.revision(
                migrate.alembic_config(connection),
                message=args.message,
                autogenerate=True,
                rev_id=number,
            )
    scripts = written if isinstance(written, list) else [written]
    for script in scripts:
        if script is None:
            continue
        ruff = Path(sys.executable).with_name("ruff")
        if ruff.exists():
            subprocess.run([ruff, "format", "--quiet", script.path], check=False)
            subprocess.run([ruff, "check", "--fix", "--quiet", script.path], check=False)
        print(f"wrote {script.path}: review it, then run tests/db/test_migrations.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
