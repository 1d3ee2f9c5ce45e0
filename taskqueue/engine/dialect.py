"""The SQL that differs between PostgreSQL and SQLite, kept in one place with fixed shapes."""

from __future__ import annotations

from dataclasses import dataclass

from taskqueue.models import Status, Task

TABLE = Task._meta.db_table
CLAIM_ORDER = "priority DESC, run_at, id"
CLAIMED_COLUMNS = "id, kind, task_path, queue_name, payload, note, priority, attempts, max_attempts, errors"


@dataclass(frozen=True)
class Dialect:
    vendor: str

    @property
    def json_param(self) -> str:
        return "%s::jsonb" if self.vendor == "postgresql" else "%s"

    def claim_sql(self, queue_filter: str) -> str:
        """Claim up to N ready tasks of one selector: mark them running for this worker, return them."""
        pick = (
            f"SELECT id FROM {TABLE} WHERE status = '{Status.READY}' AND {queue_filter} AND run_at <= %(now)s "
            f"ORDER BY {CLAIM_ORDER} LIMIT %(limit)s"
        )
        assign = (
            f"status = '{Status.RUNNING}', claimed_by_id = %(worker)s, started_at = %(now)s, attempts = attempts + 1"
        )
        if self.vendor == "postgresql":
            # SKIP LOCKED: rows another worker is claiming are passed over, never waited for.
            return (
                f"WITH picked AS ({pick} FOR UPDATE SKIP LOCKED) "
                f"UPDATE {TABLE} AS t SET {assign.replace('attempts + 1', 't.attempts + 1')} "
                f"FROM picked WHERE t.id = picked.id "
                f"RETURNING {', '.join('t.' + column for column in CLAIMED_COLUMNS.split(', '))}"
            )
        # SQLite: one write statement takes the database's write lock before it reads, so claims serialize.
        return f"UPDATE {TABLE} SET {assign} WHERE id IN ({pick}) RETURNING {CLAIMED_COLUMNS}"


QUEUE_FILTERS = {"all": "1 = 1", "exact": "queue_name = %(queue)s", "prefix": "queue_name LIKE %(queue)s ESCAPE '\\'"}
