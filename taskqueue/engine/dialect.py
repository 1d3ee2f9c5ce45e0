"""The SQL that differs between PostgreSQL and SQLite, kept in one place with fixed shapes."""

from __future__ import annotations

from dataclasses import dataclass

from taskqueue.models import PausedQueue, Status, Task

TABLE = Task._meta.db_table
PAUSED_TABLE = PausedQueue._meta.db_table
CLAIM_ORDER = "priority DESC, run_at, id"
CLAIMED_COLUMNS = (
    "id, kind, task_path, queue_name, payload, note, priority, attempts, max_attempts, errors, enqueued_at, "
    "started_at, concurrency_key"
)


@dataclass(frozen=True)
class Dialect:
    vendor: str

    @property
    def json_param(self) -> str:
        return "%s::jsonb" if self.vendor == "postgresql" else "%s"

    @property
    def now(self) -> str:
        """The claim's notion of now. SQLite's is read inside the statement, after the write lock is
        taken: a time taken before waiting for the lock would miss tasks committed meanwhile."""
        if self.vendor == "postgresql":
            return "%(now)s"
        return "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"

    @property
    def due(self) -> str:
        """What run_at is compared with. SQLite's clock has milliseconds, run_at microseconds: a task
        stored during the current millisecond counts as due."""
        if self.vendor == "postgresql":
            return self.now
        return f"{self.now} || '999'"

    @property
    def started_at(self) -> str:
        """When the claimed attempt starts. On SQLite's millisecond clock, never before the run time
        (which a task claimed in the millisecond it was stored would otherwise be)."""
        if self.vendor == "postgresql":
            return self.now
        return f"MAX(run_at, {self.now})"

    def claim_sql(self, queue_filter: str) -> str:
        """Claim up to N ready tasks of one selector: mark them running for this worker, return them."""
        pick = (
            f"SELECT id FROM {TABLE} WHERE status = '{Status.READY}' AND {queue_filter} AND run_at <= {self.due} "
            f"AND queue_name NOT IN (SELECT name FROM {PAUSED_TABLE}) "
            f"ORDER BY {CLAIM_ORDER} LIMIT %(limit)s"
        )
        assign = f"status = '{Status.RUNNING}', claimed_by_id = %(worker)s, started_at = {self.started_at}"
        if self.vendor == "postgresql":
            # SKIP LOCKED: rows another worker is claiming are passed over, never waited for.
            return (
                f"WITH picked AS ({pick} FOR UPDATE SKIP LOCKED) "
                f"UPDATE {TABLE} AS t SET {assign}, attempts = t.attempts + 1 "
                f"FROM picked WHERE t.id = picked.id "
                f"RETURNING {', '.join('t.' + column for column in CLAIMED_COLUMNS.split(', '))}"
            )
        # SQLite: one write statement takes the database's write lock before it reads, so claims serialize.
        return f"UPDATE {TABLE} SET {assign}, attempts = attempts + 1 WHERE id IN ({pick}) RETURNING {CLAIMED_COLUMNS}"


QUEUE_FILTERS = {"all": "1 = 1", "exact": "queue_name = %(queue)s", "prefix": "queue_name LIKE %(queue)s ESCAPE '\\'"}
