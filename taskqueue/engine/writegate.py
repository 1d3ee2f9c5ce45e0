"""SQLite: worker writes queue on a file lock, so that no writer starves.

SQLite lets one writer in at a time. A writer that finds the database locked waits in SQLite's busy
handler, which sleeps and tries again (sleeps of up to 100 ms): while it sleeps, writers that are
awake take the lock between its tries. With a few worker processes writing back to back, one thread's
write can wait for seconds this way, and a finished task whose outcome waits that long runs again if
its process is killed meanwhile.

So each worker write on SQLite first takes an exclusive `flock` on a file beside the database (one
open file per thread, since a lock belongs to an open file). Waiters then sleep in the kernel and are
woken the moment the lock is released, and the SQLite lock behind it is nearly always free. Other
writers (the web process enqueueing) do not take the gate; they still wait in the busy handler, now
against one worker at a time instead of all of them. PostgreSQL needs none of this: its row locks
queue waiters.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any

from django.db import connections

try:
    import fcntl
except ImportError:  # not on Windows: there the busy handler alone decides
    fcntl = None  # type: ignore[assignment]

_files = threading.local()


def gate(using: str) -> AbstractContextManager[Any]:
    """A context to wrap one write transaction of a worker in; a no-op but on a file-backed SQLite."""
    connection = connections[using]
    # Inside a transaction already open the SQLite lock may be held: waiting for the gate then could
    # deadlock with a gate holder waiting for that lock. Only a transaction's outermost write queues.
    if connection.vendor != "sqlite" or fcntl is None or connection.in_atomic_block:
        return nullcontext()
    name = str(connection.settings_dict["NAME"])
    # In memory there is no file to lock beside; a URI name (file:...?mode=...) is not a plain path.
    if connection.is_in_memory_db() or name.startswith("file:"):
        return nullcontext()
    return _held(f"{name}-taskqueue.lock")


@contextmanager
def _held(path: str) -> Iterator[None]:
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
