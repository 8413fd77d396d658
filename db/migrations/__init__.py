"""Alembic migrations of the schema in `db.models`; run through `db.migrate`, no alembic.ini."""
