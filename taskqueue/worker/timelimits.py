"""Holding running tasks to their time limits: the watchdog of a worker process.

Soft: at its deadline a task's `stop_requested()` turns true and TimeLimitExceeded is raised in its
thread at its next bytecode (an asynchronous exception); the attempt then fails or is retried by the
task's rules. Code blocked in C (a sleep whose exceptions the task swallows, a socket read) never
sees it, so:

Hard: a task still running TIMEOUT_GRACE after its soft deadline (or at its hard `time_limit`) has
its worker process ended. Before the process exits, the attempt is recorded as timed out
(TimeLimitExceeded, counted, retried or failed by the task's rules: not abandoned, not a crash), and
the other tasks of the process are put back uncounted; its supervisor (`--processes`, supervisord,
honcho, systemd) starts a new one. A group that does not own its process (started from Python) only
logs a task past its hard limit.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

from django.db import connections

from taskqueue.engine import liveness
from taskqueue.engine.executors import TaskControl
from taskqueue.engine.outcomes import Recorder
from taskqueue.engine.running import after_error, log_outcome
from taskqueue.exceptions import TimeLimitExceeded

if TYPE_CHECKING:
    from taskqueue.engine.claim import ClaimedTask
    from taskqueue.worker.threads import WorkerGroup

logger = logging.getLogger("taskqueue.worker")

#: The exit status of a worker process ended for a task past its hard time limit.
EXIT_TIME_LIMIT = 3


def enforce(group: WorkerGroup, now: float) -> None:
    """One look at every running task of the group (the group's watchdog calls this often)."""
    for worker in group.workers:
        running = worker.running
        if running is None:
            continue
        _, control, started, task = running
        if (
            control.soft_deadline is not None
            and now >= control.soft_deadline
            and control.time_out()
        ):
            logger.warning(
                "task timed out id=%s path=%s: TimeLimitExceeded raised in it",
                task.id,
                task.task_path,
            )
        if control.hard_deadline is not None and now >= control.hard_deadline and control.running():
            hard_limit(group, task, control, started)


def hard_limit(group: WorkerGroup, task: ClaimedTask, control: TaskControl, started: float) -> None:
    if not group.process_exits:
        if not control.past_hard_limit:
            control.past_hard_limit = True
            logger.error(
                "task id=%s is past its hard time limit; its thread cannot be stopped from here",
                task.id,
            )
        return
    logger.critical(
        "task id=%s path=%s is past its hard time limit: ending this worker process",
        task.id,
        task.task_path,
    )
    try:
        error = TimeLimitExceeded(
            "The task ran past its hard time limit: its worker process was ended."
        )
        outcome = after_error(task, control, control.attempt, error)
        recorder = Recorder(
            group.using, group.process_id, group.identity, group.engine.RESULT_RETENTION
        )
        recorder.add(outcome)
        recorder.flush()
        log_outcome(outcome, time.monotonic() - started)
        liveness.put_back(group.using, group.process_id)  # the process's other tasks, uncounted
        liveness.deregister(group.using, group.process_id)
    except Exception:
        # The recovery of other workers finds this process gone and settles its tasks instead.
        logger.exception("could not record the timed-out task before exiting")
    finally:
        connections.close_all()
        os._exit(EXIT_TIME_LIMIT)
