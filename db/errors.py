"""Errors of the database layer that more than one of its modules raises."""

from __future__ import annotations


class SchemaVersionError(RuntimeError):
    """The database's schema is not the one this code needs, or cannot be migrated to it."""
