"""Queue classes the tests enqueue to; importable by the worker processes the tests start."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from taskqueue import BaseQueue, Retry, Stopped, TaskInfo


def record(line: str) -> None:
    """Append one line to the file the test named (atomic for short lines with O_APPEND)."""
    path = os.environ.get("TEST_RECORD_FILE")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{line}\n".encode())
        finally:
            os.close(fd)


class NoOpQueue(BaseQueue[object]):
    queue_name = "noop"

    @classmethod
    def process(cls, task_info: TaskInfo[object]) -> Retry | None:
        return None


class RecordingQueue(BaseQueue[object]):
    queue_name = "recording"

    @classmethod
    def process(cls, task_info: TaskInfo[object]) -> Retry | None:
        record(f"{task_info.id} {os.getpid()} {task_info.get_arg()}")
        return None


class FailingQueue(BaseQueue[str]):
    queue_name = "failing"

    @classmethod
    def process(cls, task_info: TaskInfo[str]) -> Retry | None:
        raise ValueError(task_info.get_arg())


class DeepFailureQueue(BaseQueue[int]):
    """Fails from deep recursion, for a traceback of tens of kilobytes."""

    queue_name = "failing"

    @classmethod
    def process(cls, task_info: TaskInfo[int]) -> Retry | None:
        # Two functions calling each other: Python abbreviates runs of one repeated frame, not
        # these.
        def down(depth: int) -> None:
            if depth == 0:
                raise RuntimeError("bottom reached")
            further(depth - 1)

        def further(depth: int) -> None:
            down(depth)

        down(task_info.get_arg())


class ExitingQueue(BaseQueue[None]):
    queue_name = "failing"

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> Retry | None:
        raise SystemExit(3)


class FlakyQueue(BaseQueue[int]):
    """Raises a retryable error until its attempt count reaches the argument."""

    queue_name = "flaky"
    max_attempts = 3
    retry_on = (ConnectionError,)
    retry_backoff = 0.0

    @classmethod
    def process(cls, task_info: TaskInfo[int]) -> Retry | None:
        if task_info.attempt_count < task_info.get_arg():
            raise ConnectionError(f"attempt {task_info.attempt_count} failed")
        return None


class RetryingQueue(BaseQueue[dict]):
    """Returns Retry until it has run `runs` times; `counted` says whether those retries count."""

    queue_name = "retrying"

    @classmethod
    def process(cls, task_info: TaskInfo[dict]) -> Retry | None:
        arg = task_info.get_arg()
        record(f"{task_info.id} attempt_count={task_info.attempt_count}")
        marker = Path(arg["dir"]) / f"runs-{task_info.id}"
        runs = int(marker.read_text()) + 1 if marker.exists() else 1
        marker.write_text(str(runs))
        if runs < arg["runs"]:
            return Retry(count_attempt=arg["counted"])
        return None


@dataclass
class Person:
    name: str
    age: int


class PersonQueue(BaseQueue[Person]):
    queue_name = "people"

    @classmethod
    def process(cls, task_info: TaskInfo[Person]) -> Retry | None:
        person = task_info.get_arg()
        assert isinstance(person, Person)
        record(f"{person.name} {person.age}")
        return None


class PickledQueue(BaseQueue[object]):
    queue_name = "pickled"
    pickle_args = True

    @classmethod
    def process(cls, task_info: TaskInfo[object]) -> Retry | None:
        record(repr(task_info.get_arg()))
        return None


class StoppableQueue(BaseQueue[float]):
    """Runs up to `arg` seconds, polling stop_requested(); on a stop, asks to be put back
    uncounted."""

    queue_name = "slow"

    @classmethod
    def process(cls, task_info: TaskInfo[float]) -> Retry | None:
        record(f"{task_info.id} started {os.getpid()}")
        deadline = time.monotonic() + task_info.get_arg()
        while time.monotonic() < deadline:
            if task_info.stop_requested():
                record(f"{task_info.id} stopped")
                return Retry(count_attempt=False)
            time.sleep(0.05)
        record(f"{task_info.id} finished {os.getpid()}")
        return None


class KillerQueue(BaseQueue[dict]):
    """SIGKILLs its own worker process: on every attempt, or only on the first (`once`)."""

    queue_name = "killer"
    max_attempts = 3

    @classmethod
    def process(cls, task_info: TaskInfo[dict]) -> Retry | None:
        arg = task_info.get_arg()
        record(f"{task_info.id} attempt {task_info.attempt_count} pid {os.getpid()}")
        if not arg.get("once") or task_info.attempt_count == 0:
            time.sleep(arg.get("sleep", 0))
            os.kill(os.getpid(), signal.SIGKILL)
        return None


class LaterQueue(BaseQueue[None]):
    queue_name = "later"

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> Retry | None:
        return Retry(when=timezone.now() + timedelta(minutes=10))


class NotAQueue:
    pass


class HangOnceQueue(BaseQueue[None]):
    """Hangs (ignoring stop requests) on its first attempt, so a test can kill the worker
    mid-task."""

    queue_name = "hang-once"

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> Retry | None:
        record(f"{task_info.id} attempt {task_info.attempt_count} pid {os.getpid()}")
        if task_info.attempt_count == 0:
            time.sleep(120)
        return None


class NeedsFixQueue(BaseQueue[str]):
    """Fails until the file its argument names exists: an operator fixes the cause, then retries."""

    queue_name = "needs-fix"

    @classmethod
    def process(cls, task_info: TaskInfo[str]) -> Retry | None:
        if not Path(task_info.get_arg()).exists():
            raise FileNotFoundError(f"{task_info.get_arg()} is missing")
        record(f"{task_info.id} fixed")
        return None


class ExclusiveQueue(BaseQueue[dict]):
    """One task per account at a time; records when each starts and ends."""

    queue_name = "exclusive"
    concurrency_key = "account:{account}"
    concurrency_limit = 1
    concurrency_duration = 60.0

    @classmethod
    def process(cls, task_info: TaskInfo[dict]) -> Retry | None:
        arg = task_info.get_arg()
        record(f"start {arg['account']} {time.time()!r} {task_info.id}")
        time.sleep(arg.get("seconds", 0))
        record(f"end {arg['account']} {time.time()!r} {task_info.id}")
        return None


class SingletonQueue(BaseQueue[None]):
    """At most one waiting or running at a time; extra ones are discarded."""

    queue_name = "singleton"
    concurrency_key = "the-one"
    on_conflict = "discard"

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> Retry | None:
        return None


class StopsWhenAskedQueue(BaseQueue[None]):
    """Does its work only if nobody asked it to stop; otherwise raises Stopped."""

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> None:
        if task_info.stop_requested():
            raise Stopped
        record("stops-when-asked queue ran")


class RaisesStoppedQueue(BaseQueue[None]):
    """Raises Stopped though nobody asked it to stop: a bug in the task."""

    @classmethod
    def process(cls, task_info: TaskInfo[None]) -> None:
        raise Stopped
