"""Alembic's environment: run by `db.migrate`, never from an alembic.ini.

The caller opens the connection and its transaction (`db.migrate` takes the
migration lock in it first) and hands it over in `config.attributes`; every
revision runs in that one transaction, so an upgrade is applied whole or not
at all.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from db.migrate import compare_server_default

config = context.config
if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported: use `mtlb db upgrade`")
connection = config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through db.migrate, which passes the connection in")
target: MetaData | None = config.attributes.get("target_metadata")
if target is None:
    from db.models import Base

    target = Base.metadata

context.configure(
    connection=connection,
    target_metadata=target,
    # SQLite cannot ALTER most things: autogenerate writes batch operations (a
    # table copy on SQLite, plain ALTERs on PostgreSQL).
    render_as_batch=True,
    compare_type=True,
    compare_server_default=compare_server_default,
    # db.migrate runs SQLite in explicit BEGIN IMMEDIATE transactions, so DDL
    # there is transactional as on PostgreSQL.
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
