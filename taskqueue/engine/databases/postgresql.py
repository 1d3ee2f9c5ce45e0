"""PostgreSQL, the first-class database: row locks that skip, binary array inserts, one-statement
writes, asynchronous commits for a worker's own writes, advisory locks as proof of life,
LISTEN/NOTIFY."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from taskqueue.engine.databases.base import (
    AS_TEXT,
    CLAIM_ASSIGN,
    CLAIMED_COLUMNS,
    FREE,
    HELD,
    INSERT,
    TABLE,
    UNKNOWN,
    Database,
    Statement,
)
from taskqueue.models import ConcurrencyKey

# Two-integer advisory lock key: (namespace, worker process id).
LOCK_NAMESPACE = 0x7A51
# Statements of the heartbeat's own connection give up quickly instead of waiting behind task work.
HEARTBEAT_STATEMENT_TIMEOUT_MS = 5000
HEARTBEAT_LOCK_TIMEOUT_MS = 2000

INSERT_ONE = (
    f"{INSERT} VALUES (%b, %b, %b, %b::jsonb, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, "
    "%b::jsonb, 0, FALSE, FALSE) "
    "RETURNING id"
)
INSERT_MANY = (
    f"{INSERT} SELECT kind, task_path, queue_name, payload::jsonb, note, priority, status, "
    "dupe_key, enqueued_at, run_at, max_attempts, retry_abandoned, concurrency_key, "
    "concurrency_limit, concurrency_duration, finished_at, "
    "errors::jsonb, 0, FALSE, FALSE FROM unnest("
    "%b::varchar[], %b::varchar[], %b::varchar[], %b::text[], %b::text[], %b::smallint[], "
    "%b::varchar[], %b::varchar[], %b::timestamptz[], %b::timestamptz[], %b::integer[], "
    "%b::boolean[], %b::varchar[], %b::smallint[], %b::float8[], %b::timestamptz[], "
    "%b::text[]) WITH ORDINALITY AS "
    "new (kind, task_path, queue_name, payload, note, priority, status, dupe_key, enqueued_at, "
    "run_at, max_attempts, retry_abandoned, concurrency_key, concurrency_limit, "
    "concurrency_duration, finished_at, errors, position) ORDER BY position RETURNING id"
)


class PostgreSQL(Database):
    vendor = "postgresql"
    json_param: ClassVar[str] = "%s::jsonb"
    wakes_workers: ClassVar[bool] = True
    skip_locked: ClassVar[str] = " FOR UPDATE SKIP LOCKED"

    def returning(self, prefix: str = "") -> str:
        return ", ".join(f"{prefix}{c}{'::text' if c in AS_TEXT else ''}" for c in CLAIMED_COLUMNS)

    def claim_sql(self, queue_filter: str) -> str:
        # SKIP LOCKED: rows another worker is claiming are passed over, never waited for.
        return (
            f"WITH picked AS ({self.pick_sql(queue_filter)} FOR UPDATE SKIP LOCKED) "
            f"UPDATE {TABLE} AS t SET {CLAIM_ASSIGN}, claims = t.claims + 1 "
            f"FROM picked WHERE t.id = picked.id RETURNING {self.returning('t.')}"
        )

    def insert(self, connection: Any, rows: list[tuple[Any, ...]]) -> list[int]:
        """One short statement whatever the row count: column arrays, sent in binary and unnested in
        order."""
        import psycopg

        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            if len(rows) == 1:
                cursor.execute(INSERT_ONE, rows[0])
            else:
                cursor.execute(INSERT_MANY, [list(column) for column in zip(*rows, strict=True)])
            return [row[0] for row in cursor.fetchall()]

    def lock_key(self, using: str, key: str) -> None:
        """One upsert makes or locks the row, so a row pruned meanwhile is made again, never
        silently not locked."""
        from django.db import connections

        with connections[using].cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {ConcurrencyKey._meta.db_table} (key) VALUES (%s) "
                "ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key",
                [key],
            )

    def tune_writer(self, connection: Any) -> None:
        """A worker's own writes commit asynchronously: visible at once and safe from the worker's
        death, without waiting for a disk flush per task. Only a crash of the database server itself
        can lose the last fraction of a second of them, and those tasks then run again."""
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")

    def write(
        self, connection: Any, statements: list[Statement], then: Callable[[], None] | None
    ) -> list[Any]:
        if then is None and not connection.in_atomic_block:
            return self._as_one_statement(connection, statements)
        return super().write(connection, statements, then)

    @staticmethod
    def _as_one_statement(connection: Any, statements: list[Statement]) -> list[Any]:
        """All the statements as data-modifying CTEs of one statement, atomic by itself and one
        round trip to the server. They touch different rows, so seeing one snapshot changes
        nothing."""
        parts, params, picks = [], [], []
        for index, (sql, values) in enumerate(statements):
            returns_row = " RETURNING " in sql
            parts.append(f"s{index} AS ({sql if returns_row else sql + ' RETURNING 1'})")
            params.extend(values)
            picks.append(
                f"(SELECT cancel_requested FROM s{index}), (SELECT attempts FROM s{index})"
                if returns_row
                else f"(SELECT count(*) FROM s{index})"
            )
        with connection.cursor() as cursor:
            cursor.execute(f"WITH {', '.join(parts)} SELECT {', '.join(picks)}", params)
            row = list(cursor.fetchone())
        if statements and " RETURNING " in statements[-1][0]:
            attempts = row.pop()
            cancelled = row.pop()
            row.append(None if attempts is None else (cancelled, attempts))
        return row

    def hold_session_lock(self, connection: Any, process_id: int) -> None:
        """A session-level advisory lock, held by the heartbeat's connection for the process's life:
        when another worker can take it, the process (or its session) is gone."""
        with connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {HEARTBEAT_STATEMENT_TIMEOUT_MS}")
            cursor.execute(f"SET lock_timeout = {HEARTBEAT_LOCK_TIMEOUT_MS}")
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_NAMESPACE, process_id])

    def session_lock(self, connection: Any, process_id: int, grace: Any) -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT now() - pg_postmaster_start_time() > %s", [grace])
            if not cursor.fetchone()[0]:
                return UNKNOWN  # just restarted: living workers have not re-taken their locks yet
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, process_id])
            free = cursor.fetchone()[0]
            if free:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, process_id])
        return FREE if free else HELD

    def estimated_rows(self, connection: Any, table: str) -> int | None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])
            row = cursor.fetchone()
        return row[0] if row else None


def run_on_postgresql(sql: str) -> Callable[[Any, Any], None]:
    """A migration step only PostgreSQL takes (other databases have no equivalent)."""

    def operation(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == PostgreSQL.vendor:
            schema_editor.execute(sql)

    return operation
