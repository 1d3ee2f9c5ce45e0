"""The scheduler thread of a worker process: syncs the static recurring tasks, enqueues due ticks,
prunes old runs.

Every worker process runs one unless started with --only-work; ticks are enqueued exactly once
however many run (see taskqueue.recurring).

Nothing a pass raises ends the thread, since a dead scheduler enqueues nothing and says nothing: a
schedule that fails fails alone (recorded on its row by recurring.run_due), the database going away
is waited out, and any other error is logged with its traceback; both back off. `last_pass_ok_at`
tells the process's heartbeat that the thread is not only alive but getting through its passes.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.db import DatabaseError, connections, router

from taskqueue import recurring
from taskqueue.conf import EngineSettings
from taskqueue.models import RecurringTask

logger = logging.getLogger("taskqueue.recurring")
# Seconds between prunings of old runs, while the last one found less than a batch.
PRUNE_INTERVAL = 60.0
# The longest wait between passes while they fail (unless SCHEDULER_INTERVAL is longer).
MAX_BACKOFF = 5.0


class Scheduler(threading.Thread):
    def __init__(self, engine: EngineSettings, stopping: threading.Event) -> None:
        super().__init__(name="taskqueue-scheduler", daemon=True)
        self.engine = engine
        self.stopping = stopping
        self.using = router.db_for_write(RecurringTask)
        self.catch_up = max(recurring.CATCH_UP, timedelta(seconds=5 * engine.SCHEDULER_INTERVAL))
        # time.monotonic() when the last pass got through (a schedule failing alone does not fail
        # the pass). It starts at construction, so a scheduler in its first pass is not taken for
        # stuck.
        self.last_pass_ok_at: float = time.monotonic()
        self.synced = False
        # Static schedules whose settings are invalid: not run until the settings are fixed.
        self.invalid_static: set[str] = set()
        self.prune_at = 0.0
        self.prune_batch = recurring.PRUNE_BATCH

    def run(self) -> None:
        failures = 0
        try:
            while not self.stopping.is_set():
                try:
                    self.run_pass()
                    failures = 0
                except DatabaseError as error:
                    failures += 1
                    logger.warning("scheduler: database error (retrying): %s", error)
                    connections[self.using].close()
                except Exception:
                    failures += 1
                    logger.exception("scheduler: unexpected error in a pass (retrying)")
                self.stopping.wait(self.pause(failures))
        finally:
            connections.close_all()

    def run_pass(self) -> None:
        """Sync the static schedules (once per process), enqueue the due ticks, prune old runs."""
        if not self.synced:
            self.invalid_static = recurring.sync_static(self.engine.RECURRING)
            self.synced = True
        recurring.run_due(catch_up=self.catch_up, skip=self.invalid_static)
        self.prune()
        self.last_pass_ok_at = time.monotonic()

    def prune(self) -> None:
        """Delete a batch of old runs now and then; a batch a pass while there are more than a
        batch."""
        if time.monotonic() < self.prune_at:
            return
        deleted = recurring.prune_runs(batch=self.prune_batch)
        self.prune_at = time.monotonic() + (0 if deleted >= self.prune_batch else PRUNE_INTERVAL)

    def pause(self, failures: int) -> float:
        """The wait before the next pass: the interval, doubling while passes fail (at most
        MAX_BACKOFF)."""
        interval = self.engine.SCHEDULER_INTERVAL
        return interval if not failures else min(interval * 2**failures, max(interval, MAX_BACKOFF))
