"""PostgreSQL LISTEN/NOTIFY: wake idle workers within milliseconds of a commit that makes a task ready.

A trigger (see the migrations) notifies the channel; this is an optimisation only, polling remains
the correctness path, so any trouble here just means waking at the next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import connections

logger = logging.getLogger("taskqueue.wakeup")
CHANNEL = "taskqueue"


class Listener(threading.Thread):
    def __init__(self, using: str, on_wake: Callable[[], None], stopping: threading.Event) -> None:
        super().__init__(name="taskqueue-listener", daemon=True)
        self.using = using
        self.on_wake = on_wake
        self.stopping = stopping

    def run(self) -> None:
        import psycopg

        params = connections[self.using].get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.5
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.on_wake()
            except psycopg.Error as error:
                logger.info("wake-up listener reconnecting in %.1fs: %s", backoff, error)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
