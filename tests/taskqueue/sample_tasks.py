"""django.tasks task functions the tests enqueue; importable by the worker processes the tests
start."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.tasks import TaskContext, task

from taskqueue import Stopped, stop_requested
from tests.taskqueue.sample_queues import record


@task
def add(a: int, b: int) -> int:
    return a + b


@task(priority=7, queue_name="special")
def special() -> str:
    return "special"


@task
async def add_later(a: int, b: int) -> int:
    return a + b


@task(takes_context=True)
def which_attempt(context: TaskContext) -> dict:
    return {"attempt": context.attempt, "id": context.task_result.id}


@task
def fail(message: str) -> None:
    raise ValueError(message)


@task
def exit_now() -> None:
    raise SystemExit(2)


@task
def unstorable() -> object:
    return {1, 2, 3}


@task
def echo(*args: object, **kwargs: object) -> dict:
    record(f"echo {list(args)} {kwargs}")
    return {"args": list(args), "kwargs": kwargs}


def count_runs(path: str) -> int:
    marker = Path(path)
    runs = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(runs))
    return runs


@task(max_attempts=3, backoff=lambda exception, task_result: timedelta(0))
def flaky(path: str, failures: int) -> int:
    """Fails `failures` times, then returns how many runs it took."""
    runs = count_runs(path)
    if runs <= failures:
        raise ConnectionError(f"run {runs} failed")
    return runs


def no_retry_for_value_errors(exception: BaseException, task_result: object) -> timedelta | None:
    return None if isinstance(exception, ValueError) else timedelta(0)


@task(max_attempts=5, backoff=no_retry_for_value_errors)
def picky(path: str) -> None:
    count_runs(path)
    raise ValueError("not worth retrying")


@task(concurrency_key="account:{account_id}", concurrency_limit=2)
def sync_account(account_id: int, action: str) -> str:
    return f"{account_id}:{action}"


@task
def noop() -> None:
    """Does nothing: what remains is the cost of the front door and the engine."""


@task
def stops_when_asked() -> str:
    if stop_requested():
        raise Stopped
    return "ran"


@task
def raises_stopped() -> None:
    raise Stopped
