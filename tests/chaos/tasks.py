"""The tasks the chaos suite enqueues, one per front door, each recording its runs.

Every run appends a START line when it begins and an END line when its work is done (or a STOP line
when it stopped on request and raises `Stopped`) to the file named by $CHAOS_RECORD_FILE:

    START <key> <pid> <thread> <attempt> <monotonic> <wall>

`key` names the task (the chaos harness gives each a unique one), `attempt` is the attempt number
the task's front door reports (1 for the first; "-" where the door tells none: the Celery-style
API), the times are `time.monotonic()` (one clock for every process of the host) and `time.time()`.
Lines are written with one `os.write` on an `O_APPEND` descriptor, so each lands whole and is on
disk (in the page cache) before the next statement runs: a SIGKILL right after it loses nothing.

The harness reads these records, not the queue's tables, to tell how often each task really ran.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from django.tasks import TaskContext, task

from taskqueue import BaseQueue, Retry, Stopped, TaskInfo, stop_requested
from taskqueue.celery import shared_task

RECORD_ENV = "CHAOS_RECORD_FILE"
QUEUE = "chaos"
LONG_QUEUE = "chaos-long"
# Generous, so a task whose runs the kill storm interrupts several times still ends succeeded.
MAX_ATTEMPTS = 25

_fd: tuple[int, int] | None = None  # (pid, descriptor): reopened in a forked child
_fd_lock = threading.Lock()


def _descriptor() -> int | None:
    global _fd
    path = os.environ.get(RECORD_ENV)
    if not path:
        return None
    with _fd_lock:
        if _fd is None or _fd[0] != os.getpid():
            _fd = (os.getpid(), os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        return _fd[1]


def record(event: str, key: str, attempt: object = "-") -> None:
    """Append one record line (see the module docstring)."""
    fd = _descriptor()
    if fd is None:
        return
    thread = threading.current_thread().name.replace(" ", "_") or "-"
    line = (
        f"{event} {key} {os.getpid()} {thread} {attempt} {time.monotonic():.6f} {time.time():.6f}\n"
    )
    os.write(fd, line.encode())


def work(key: str, seconds: float, stoppable: bool, attempt: object) -> str:
    """One run: START, sleep `seconds` (stopping early when asked, if `stoppable`), END."""
    record("START", key, attempt)
    if seconds > 0:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if stoppable and stop_requested():
                record("STOP", key, attempt)
                raise Stopped
            time.sleep(min(left, 0.05))
    record("END", key, attempt)
    return key


def _arguments(arg: Any) -> tuple[str, float, bool]:
    return str(arg["key"]), float(arg.get("seconds", 0.0)), bool(arg.get("stoppable", False))


# --- front door 1: queue classes ---------------------------------------------------------------


class ChaosQueue(BaseQueue[object]):
    """Argument: {"key": str, "seconds": float, "stoppable": bool}."""

    queue_name = QUEUE
    max_attempts = MAX_ATTEMPTS
    retry_abandoned = True

    @classmethod
    def process(cls, task_info: TaskInfo[object]) -> Retry | None:
        key, seconds, stoppable = _arguments(task_info.get_arg())
        work(key, seconds, stoppable, task_info.attempt_count + 1)
        return None


class ChaosLongQueue(ChaosQueue):
    queue_name = LONG_QUEUE


class ChaosTickQueue(BaseQueue[object]):
    """What the chaos run's good recurring schedule enqueues: records a TICK line per run."""

    queue_name = QUEUE
    max_attempts = MAX_ATTEMPTS

    @classmethod
    def process(cls, task_info: TaskInfo[object]) -> Retry | None:
        record("TICK", f"tick-{task_info.id}", task_info.attempt_count + 1)
        return None


# --- front door 2: django.tasks -----------------------------------------------------------------


@task(queue_name=QUEUE, takes_context=True, max_attempts=MAX_ATTEMPTS)
def chaos_django(
    context: TaskContext, key: str, seconds: float = 0.0, stoppable: bool = False
) -> str:
    return work(key, seconds, stoppable, context.attempt)


# --- front door 3: the Celery-style API ---------------------------------------------------------


@shared_task(queue=QUEUE, retry_kwargs={"max_retries": MAX_ATTEMPTS - 1})
def chaos_celery(key: str, seconds: float = 0.0, stoppable: bool = False) -> str:
    return work(key, seconds, stoppable, "-")
