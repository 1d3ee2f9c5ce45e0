"""PostgreSQL LISTEN/NOTIFY: wake idle workers within milliseconds of a commit that makes a
task ready.

A trigger (see the migrations) notifies the channel; this is an optimisation only, polling remains
the correctness path, so any trouble here just means waking at the next poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections

logger = logging.getLogger("taskqueue.wakeup")
CHANNEL = "taskqueue"
# A connection that only listens sends nothing, so a half-open one (a failover, a dropped route)
# would go unnoticed: TCP keepalives and a bounded wait for unacknowledged data notice it, and a
# query every PROBE_INTERVAL seconds proves the server still answers. A peer that acknowledges data
# but never answers (a hung proxy or pooler) defeats both TCP timers: a probe unanswered for
# PROBE_TIMEOUT has its socket shut down, which ends the wait with an error, and the listener
# connects again.
KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15000,
    "application_name": "taskqueue-listener",
}
PROBE_INTERVAL = 30.0
PROBE_TIMEOUT = 10.0


class Listener(threading.Thread):
    def __init__(self, using: str, on_wake: Callable[[], None], stopping: threading.Event) -> None:
        super().__init__(name="taskqueue-listener", daemon=True)
        self.using = using
        self.on_wake = on_wake
        self.stopping = stopping

    def run(self) -> None:
        import psycopg

        params: dict[str, Any] = connections[self.using].get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params = KEEPALIVE | params
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as conn:  # type: ignore[arg-type]
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.5
                    self.on_wake()  # what became ready while nobody listened
                    probed = time.monotonic()
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.on_wake()
                        if time.monotonic() - probed > PROBE_INTERVAL:
                            probe(conn)
                            probed = time.monotonic()
            except psycopg.Error as error:
                logger.info("wake-up listener reconnecting in %.1fs: %s", backoff, error)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)


def probe(conn: Any, timeout: float = PROBE_TIMEOUT) -> None:
    """`SELECT 1`, answered within `timeout` seconds; else the socket is shut down under the waiting
    query, so that it fails (psycopg.OperationalError) instead of waiting forever."""
    timer = threading.Timer(timeout, _shut_down, [conn.fileno()])
    timer.daemon = True
    timer.start()
    try:
        conn.execute("SELECT 1")
    finally:
        timer.cancel()


def _shut_down(fileno: int) -> None:
    logger.warning(
        "wake-up listener: the server did not answer a probe in %.0fs; connecting again",
        PROBE_TIMEOUT,
    )
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fileno)) as sock:
        sock.shutdown(socket.SHUT_RDWR)
