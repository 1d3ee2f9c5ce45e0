"""The SQL that differs between PostgreSQL and SQLite, kept in one place with fixed shapes."""

from __future__ import annotations

from dataclasses import dataclass

from taskqueue.models import PausedQueue, Status, Task

TABLE = Task._meta.db_table
PAUSED_TABLE = PausedQueue._meta.db_table
CLAIM_ORDER = "priority DESC, run_at, id"
# What a claim returns, in order (see claim.claimed_task).
CLAIMED_COLUMNS = (
    "id", "kind", "task_path", "queue_name", "payload", "note", "priority", "attempts", "max_attempts", "errors",
    "enqueued_at", "run_at", "concurrency_key", "claims",
)  # fmt: skip
# JSON columns come back as text, decoded row by row in Python: a row the driver could not decode
# would otherwise fail the whole claim after it committed.
AS_TEXT = {"payload", "errors"}


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

    def returning(self, prefix: str = "") -> str:
        cast = "::text" if self.vendor == "postgresql" else ""
        return ", ".join(f"{prefix}{c}{cast if c in AS_TEXT else ''}" for c in CLAIMED_COLUMNS)

    def claim_sql(self, queue_filter: str) -> str:
        """Claim up to N ready tasks of one selector: mark them running for this worker, count the claim
        (the token its writes are fenced on), return them. Nothing is started or charged yet."""
        pick = (
            f"SELECT id FROM {TABLE} WHERE status = '{Status.READY}' AND {queue_filter} AND run_at <= {self.due} "
            f"AND queue_name NOT IN (SELECT name FROM {PAUSED_TABLE}) "
            f"ORDER BY {CLAIM_ORDER} LIMIT %(limit)s"
        )
        assign = f"status = '{Status.RUNNING}', claimed_by_id = %(worker)s, started_at = NULL"
        if self.vendor == "postgresql":
            # SKIP LOCKED: rows another worker is claiming are passed over, never waited for.
            return (
                f"WITH picked AS ({pick} FOR UPDATE SKIP LOCKED) "
                f"UPDATE {TABLE} AS t SET {assign}, claims = t.claims + 1 "
                f"FROM picked WHERE t.id = picked.id RETURNING {self.returning('t.')}"
            )
        # SQLite: one write statement takes the database's write lock before it reads, so claims serialize.
        return f"UPDATE {TABLE} SET {assign}, claims = claims + 1 WHERE id IN ({pick}) RETURNING {self.returning()}"


QUEUE_FILTERS = {"all": "1 = 1", "exact": "queue_name = %(queue)s", "prefix": "queue_name LIKE %(queue)s ESCAPE '\\'"}
