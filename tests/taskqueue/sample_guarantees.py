"""Tasks for the fault tests of the engine's guarantees: each records its start and end to the
test's file (O_APPEND writes, which survive a SIGKILL of the process that made them)."""

from __future__ import annotations

import os
import time

from django.tasks import task

from taskqueue import BaseQueue, Retry, TaskInfo
from tests.taskqueue.sample_queues import record


class RecordedQueue(BaseQueue[float]):
    """Sleeps for its argument (seconds), recording `start <id> <pid>` and `end <id> <pid>`."""

    queue_name = "recorded"

    @classmethod
    def process(cls, task_info: TaskInfo[float]) -> Retry | None:
        record(f"start {task_info.id} {os.getpid()}")
        time.sleep(task_info.get_arg())
        record(f"end {task_info.id} {os.getpid()}")
        return None


@task(queue_name="recorded")
def fails_with_nul() -> None:
    raise ValueError("a NUL \x00 and a lone surrogate \ud800 in the message")


@task(queue_name="recorded")
def returns_nul() -> dict:
    return {"text": "before\x00after"}


class BrieflyExclusiveQueue(BaseQueue[dict]):
    """One at a time per account, each slot held at most 0.2 s (so a slow holder's slot expires)."""

    queue_name = "briefly-exclusive"
    concurrency_key = "account:{account}"
    concurrency_limit = 1
    concurrency_duration = 0.2

    @classmethod
    def process(cls, task_info: TaskInfo[dict]) -> Retry | None:
        return None
