"""The database work that differs between databases, as one interface: `Database`.

Everything the engine says to a database is plain SQL with fixed shapes, the same on every database,
except what a subclass overrides here: how the claim picks and takes rows, how rows go in, how a
concurrency key is locked, how a worker's writes are batched, how a worker proves it is alive, and
how writers take turns. `postgresql.py` and `sqlite.py` hold one implementation each, so what runs
on your database is one module to read (as Oban keeps its `Basic` and `Lite` engines).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar

from django.db import transaction

from taskqueue.models import PausedQueue, Status, Task

TABLE = Task._meta.db_table
PAUSED_TABLE = PausedQueue._meta.db_table
CLAIM_ORDER = "priority DESC, run_at, id"
# What a claim returns, in order (see claim.claimed_task).
CLAIMED_COLUMNS = (
    "id",
    "kind",
    "task_path",
    "queue_name",
    "payload",
    "note",
    "priority",
    "attempts",
    "max_attempts",
    "errors",
    "enqueued_at",
    "run_at",
    "concurrency_key",
    "claims",
)
# What a claim sets on the rows it takes (each database adds the claim count its own way).
CLAIM_ASSIGN = f"status = '{Status.RUNNING}', claimed_by_id = %(worker)s, started_at = NULL"
# JSON columns come back as text, decoded row by row in Python: a row the driver could not decode
# would otherwise fail the whole claim after it committed.
AS_TEXT = {"payload", "errors"}
QUEUE_FILTERS = {
    "all": "1 = 1",
    "exact": "queue_name = %(queue)s",
    "prefix": "queue_name LIKE %(queue)s ESCAPE '\\'",
}
# The columns a new task is given, in statement order; the last three are the same for every new
# task.
INSERT_COLUMNS = (
    "kind",
    "task_path",
    "queue_name",
    "payload",
    "note",
    "priority",
    "status",
    "dupe_key",
    "enqueued_at",
    "run_at",
    "max_attempts",
    "retry_abandoned",
    "concurrency_key",
    "concurrency_limit",
    "concurrency_duration",
    "finished_at",
    "errors",
    "attempts",
    "abandoned",
    "cancel_requested",
)
INSERT = f"INSERT INTO {TABLE} ({', '.join(INSERT_COLUMNS)})"

# One statement of a worker's write: SQL and its parameters. One that returns a row (the start of a
# task) gives that row as its result; the others, how many rows they changed.
Statement = tuple[str, list[Any]]
# Whether a worker process's session lock is held (it lives), free (it is gone), or cannot be told.
HELD, FREE, UNKNOWN = "held", "free", "unknown"


class Database:
    """What the engine does differently on one database. Instances hold no state: one per vendor."""

    vendor: ClassVar[str]
    #: A JSON parameter's placeholder.
    json_param: ClassVar[str] = "%s"
    #: Whether idle workers can be woken by the database (LISTEN/NOTIFY), not only by polling.
    wakes_workers: ClassVar[bool] = False

    # --- claiming ---

    @property
    def due(self) -> str:
        """The SQL that `run_at` is compared with to be due now."""
        return "%(now)s"

    def pick_sql(self, queue_filter: str) -> str:
        """The ids of up to %(limit)s due, ready tasks of one selector, in claim order."""
        return (
            f"SELECT id FROM {TABLE} WHERE status = '{Status.READY}' AND {queue_filter} "
            f"AND run_at <= {self.due} "
            f"AND queue_name NOT IN (SELECT name FROM {PAUSED_TABLE}) "
            f"ORDER BY {CLAIM_ORDER} LIMIT %(limit)s"
        )

    def claim_sql(self, queue_filter: str) -> str:
        """Claim up to N ready tasks of one selector: mark them running for this worker, count the
        claim (the token its writes are fenced on), return CLAIMED_COLUMNS. Nothing is started or
        charged yet."""
        raise NotImplementedError

    def returning(self, prefix: str = "") -> str:
        return ", ".join(f"{prefix}{column}" for column in CLAIMED_COLUMNS)

    # --- enqueueing ---

    def insert(self, connection: Any, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert task rows (INSERT_COLUMNS but the last three) and return their ids, in order."""
        raise NotImplementedError

    # --- concurrency keys ---

    def lock_key(self, using: str, key: str) -> None:
        """Take the key's lock row until the transaction ends, making the row if there is none."""
        raise NotImplementedError

    #: Appended to the pruning's select of unused key rows: pass over rows others hold.
    skip_locked: ClassVar[str] = ""

    # --- a worker's writes ---

    def tune_writer(self, connection: Any) -> None:
        """Set up a worker's connection for its own writes, once per connection."""

    def write(
        self, connection: Any, statements: list[Statement], then: Callable[[], None] | None
    ) -> list[Any]:
        """Run one write of a worker (outcomes, and the next task's start) atomically; `then` runs
        in the same transaction (settling concurrency keys). Returns each statement's result."""
        results: list[Any] = []
        with (
            self.write_turn(connection),
            transaction.atomic(using=connection.alias),
            connection.cursor() as cursor,
        ):
            for sql, params in statements:
                cursor.execute(sql, params)
                results.append(cursor.fetchone() if " RETURNING " in sql else cursor.rowcount)
            if then is not None:
                then()
        return results

    def write_turn(self, connection: Any) -> AbstractContextManager[Any]:
        """A context to wrap one write transaction of a worker in: where writers must take turns."""
        return nullcontext()

    # --- liveness ---

    def hold_session_lock(self, connection: Any, process_id: int) -> None:
        """Make this connection's session hold the worker process's lock, for the process's life."""

    def session_lock(self, connection: Any, process_id: int, grace: Any) -> str:
        """HELD, FREE or UNKNOWN: whether another worker process's session lock is held."""
        return UNKNOWN

    # --- pages ---

    def estimated_rows(self, connection: Any, table: str) -> int | None:
        """The planner's row count of `table`, where the database keeps one (no full COUNT(*))."""
        return None
