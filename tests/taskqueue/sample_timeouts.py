"""Tasks that run past their time limits, one way each; importable by the worker processes the tests
start.

Each records `<task id> <event> <pid>` lines (see sample_queues.record)."""

from __future__ import annotations

import os
import socket
import time

from django.tasks import task

from taskqueue import BaseQueue, Stopped, TaskInfo, stop_requested
from taskqueue.celery import shared_task
from taskqueue.exceptions import TimeLimitExceeded
from tests.taskqueue.sample_queues import record

LIMIT = 0.5  # seconds
MOST = 30.0  # no task here runs longer than this, whatever happens


def spin(task_id: object) -> None:
    """Busy in Python, never asking whether to stop: a soft limit's exception interrupts it."""
    record(f"{task_id} start {os.getpid()}")
    deadline = time.monotonic() + MOST
    try:
        while time.monotonic() < deadline:
            sum(range(1000))
    except TimeLimitExceeded:
        record(f"{task_id} interrupted {os.getpid()}")
        raise
    record(f"{task_id} finished {os.getpid()}")


class Spins(BaseQueue[None]):
    queue_name = "timeouts"
    timeout = LIMIT
    max_attempts = 1

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> None:
        spin(task_info.id)


@task(queue_name="timeouts", timeout=LIMIT, takes_context=True)
def django_spins(context) -> None:
    spin(context.task_result.id)


@shared_task(queue="timeouts", soft_time_limit=LIMIT)
def celery_spins() -> None:
    spin("celery")


class StopsWhenTimedOut(BaseQueue[None]):
    """Polls stop_requested() and raises Stopped, as long tasks should: recorded as timed out."""

    queue_name = "timeouts"
    timeout = LIMIT
    max_attempts = 1

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> None:
        record(f"{task_info.id} start {os.getpid()}")
        deadline = time.monotonic() + MOST
        while time.monotonic() < deadline:
            try:
                if stop_requested():
                    record(f"{task_info.id} stopping {os.getpid()}")
                    raise Stopped
                time.sleep(0.01)
            except TimeLimitExceeded:
                pass  # it would rather stop by itself


class SleepsSwallowing(BaseQueue[None]):
    """Blocks in C (sleep) and swallows every exception: only ending its process ends it. Its rules
    retry a time-out once (TimeLimitExceeded is a TimeoutError)."""

    queue_name = "timeouts"
    timeout = LIMIT
    max_attempts = 2
    retry_on = (TimeoutError,)
    retry_backoff = 0.0

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> None:
        record(f"{task_info.id} start {os.getpid()}")
        deadline = time.monotonic() + MOST
        while time.monotonic() < deadline:
            try:
                time.sleep(MOST)
            except BaseException:
                record(f"{task_info.id} swallowed {os.getpid()}")


class ReadsForever(BaseQueue[dict]):
    """Blocks in a socket read from a peer that never sends."""

    queue_name = "timeouts"
    timeout = LIMIT
    max_attempts = 1

    @classmethod
    def process(cls, task_info: TaskInfo[dict]) -> None:
        record(f"{task_info.id} start {os.getpid()}")
        with socket.create_connection(
            ("127.0.0.1", task_info.get_arg()["port"]), timeout=MOST
        ) as peer:
            peer.recv(1)


class Patient(BaseQueue[None]):
    """A long task in another thread of the same process, that keeps to its own time."""

    queue_name = "patient"

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> None:
        record(f"{task_info.id} start {os.getpid()}")
        deadline = time.monotonic() + MOST
        while time.monotonic() < deadline:
            time.sleep(0.05)
        record(f"{task_info.id} finished {os.getpid()}")
