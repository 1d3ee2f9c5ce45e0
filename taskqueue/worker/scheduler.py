"""The scheduler thread of a worker process: syncs the static recurring tasks, enqueues due ticks.

Every worker process runs one unless started with --only-work; ticks are enqueued exactly once
however many run (see taskqueue.recurring).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from django.db import DatabaseError, connections, router

from taskqueue import recurring
from taskqueue.conf import EngineSettings
from taskqueue.exceptions import TaskQueueError
from taskqueue.models import RecurringTask

logger = logging.getLogger("taskqueue.recurring")


class Scheduler(threading.Thread):
    def __init__(self, engine: EngineSettings, stopping: threading.Event) -> None:
        super().__init__(name="taskqueue-scheduler", daemon=True)
        self.engine = engine
        self.stopping = stopping
        self.using = router.db_for_write(RecurringTask)
        self.catch_up = timedelta(seconds=5 * engine.SCHEDULER_INTERVAL)

    def run(self) -> None:
        synced = False
        failures = 0
        try:
            while not self.stopping.is_set():
                try:
                    if not synced:
                        recurring.sync_static(self.engine.RECURRING)
                        synced = True
                    recurring.run_due(catch_up=max(recurring.CATCH_UP, self.catch_up))
                    failures = 0
                except TaskQueueError as error:
                    logger.error("recurring tasks in settings are invalid, none synced: %s", error)
                    synced = True
                except DatabaseError as error:
                    failures += 1
                    logger.warning("scheduler: database error (retrying): %s", error)
                    connections[self.using].close()
                self.stopping.wait(min(self.engine.SCHEDULER_INTERVAL * 2**failures, 5.0))
        finally:
            connections.close_all()
