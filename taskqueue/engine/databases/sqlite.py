"""SQLite, the embedded default: WAL mode and a busy timeout (set by the site's settings), one
writer at a time, and worker writes that take turns on a file lock beside the database.

Why the turns: SQLite lets one writer in at a time. A writer that finds the database locked waits in
SQLite's busy handler, which sleeps and tries again (sleeps of up to 100 ms): while it sleeps,
writers that are awake take the lock between its tries. With a few worker processes writing back to
back, one thread's write can wait for seconds this way, and a finished task whose outcome waits that
long runs again if its process is killed meanwhile.

So each worker write on SQLite first takes an exclusive `flock` on a file beside the database (one
open file per thread, since a lock belongs to an open file). Waiters then sleep in the kernel and
are woken the moment the lock is released, and the SQLite lock behind it is nearly always free.
Other writers (the web process enqueueing) do not take the gate; they still wait in the busy
handler, now against one worker at a time instead of all of them. PostgreSQL needs none of this: its
row locks queue waiters.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any

from taskqueue.engine.databases.base import CLAIM_ASSIGN, INSERT, TABLE, Database
from taskqueue.models import ConcurrencyKey

try:
    import fcntl
except ImportError:  # not on Windows: there the busy handler alone decides
    fcntl = None  # type: ignore[assignment]

ROW = f"({', '.join(['%s'] * 17)}, 0, 0, 0)"
_files = threading.local()


class SQLite(Database):
    vendor = "sqlite"

    @property
    def now(self) -> str:
        """The claim's notion of now, read inside the statement, after the write lock is taken: a
        time taken before waiting for the lock would miss tasks committed meanwhile."""
        return "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"

    @property
    def due(self) -> str:
        """SQLite's clock has milliseconds, run_at microseconds: a task stored during the current
        millisecond counts as due."""
        return f"{self.now} || '999'"

    def claim_sql(self, queue_filter: str) -> str:
        # One write statement takes the database's write lock before it reads, so claims serialize.
        return (
            f"UPDATE {TABLE} SET {CLAIM_ASSIGN}, claims = claims + 1 "
            f"WHERE id IN ({self.pick_sql(queue_filter)}) "
            f"RETURNING {self.returning()}"
        )

    def insert(self, connection: Any, rows: list[tuple[Any, ...]]) -> list[int]:
        with connection.cursor() as cursor:
            values = ", ".join([ROW] * len(rows))
            cursor.execute(
                f"{INSERT} VALUES {values} RETURNING id", [value for row in rows for value in row]
            )
            return [row[0] for row in cursor.fetchall()]

    def lock_key(self, using: str, key: str) -> None:
        """Each transaction holds the database's write lock already: the row need only exist."""
        ConcurrencyKey.objects.using(using).get_or_create(key=key)

    def write_turn(self, connection: Any) -> AbstractContextManager[Any]:
        return gate(connection)


def gate(connection: Any) -> AbstractContextManager[Any]:
    """The file lock a worker write takes its turn on; a no-op in memory, or inside an open
    transaction."""
    # Inside a transaction already open the SQLite lock may be held: waiting for the gate then could
    # deadlock with a gate holder waiting for that lock. Only a transaction's outermost write
    # queues.
    if fcntl is None or connection.in_atomic_block:
        return nullcontext()
    name = str(connection.settings_dict["NAME"])
    # In memory there is no file to lock beside; a URI name (file:...?mode=...) is not a plain path.
    if connection.is_in_memory_db() or name.startswith("file:"):
        return nullcontext()
    return held(f"{name}-taskqueue.lock")


@contextmanager
def held(path: str) -> Iterator[None]:
    handle = _file(path)
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _file(path: str) -> IO[bytes]:
    opened: dict[str, IO[bytes]] = getattr(_files, "opened", None) or {}
    _files.opened = opened
    handle = opened.get(path)
    if handle is None or handle.closed:
        Path(path).touch(mode=0o600, exist_ok=True)
        handle = opened[path] = open(path, "rb")  # noqa: SIM115 - kept open for the thread's life
    return handle
