"""The engine's database work, one implementation per database (see `base.Database`)."""

from __future__ import annotations

from typing import Any

from django.db import connections

from taskqueue.engine.databases.base import Database
from taskqueue.engine.databases.postgresql import PostgreSQL
from taskqueue.engine.databases.sqlite import SQLite
from taskqueue.exceptions import TaskQueueError

DATABASES: dict[str, Database] = {
    database.vendor: database for database in (PostgreSQL(), SQLite())
}


def for_connection(connection: Any) -> Database:
    """The implementation for a Django connection's database; TaskQueueError for one the queue does
    not run on."""
    try:
        return DATABASES[connection.vendor]
    except KeyError:
        raise TaskQueueError(
            f"The task queue runs on {' and '.join(sorted(DATABASES))}, not on {connection.vendor} "
            f"(database {connection.alias!r})."
        ) from None


def for_alias(using: str) -> Database:
    return for_connection(connections[using])
