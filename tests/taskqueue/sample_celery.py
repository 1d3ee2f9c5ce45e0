"""Celery-style tasks the tests send; importable by the worker processes the tests start."""

from __future__ import annotations

import time

from taskqueue import Stopped, stop_requested
from taskqueue.celery import shared_task
from tests.taskqueue.sample_queues import record
from tests.taskqueue.sample_tasks import count_runs


@shared_task
def multiply(a: int, b: int) -> int:
    record(f"multiply {a} {b}")
    return a * b


@shared_task(queue="mail", priority=3)
def notify(user_id: int, channel: str = "email") -> str:
    return f"{channel}:{user_id}"


@shared_task(autoretry_for=(ConnectionError,), retry_kwargs={"max_retries": 2, "countdown": 0})
def unreliable(path: str, failures: int) -> int:
    runs = count_runs(path)
    if runs <= failures:
        raise ConnectionError(f"run {runs}")
    return runs


@shared_task(autoretry_for=(ConnectionError,), retry_kwargs={"max_retries": 5, "countdown": 0})
def wrong_input(path: str) -> None:
    count_runs(path)
    raise KeyError("not in autoretry_for")


@shared_task
def explode(message: str) -> None:
    raise RuntimeError(message)


@shared_task
def long_running(seconds: float) -> str:
    """Polls stop_requested(), as long tasks should, and stops early when asked (raising
    Stopped)."""
    record("long_running started")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stop_requested():
            record("long_running stopped")
            raise Stopped
        time.sleep(0.05)
    return "finished"


@shared_task(autoretry_for=(ConnectionError,), retry_kwargs={"max_retries": 3, "countdown": 3600})
def retry_in_an_hour() -> None:
    raise ConnectionError("the server is down")


@shared_task(concurrency_key=lambda order_id, **_: f"order:{order_id}", on_conflict="discard")
def ship(order_id: int, carrier: str = "post") -> str:
    return f"{order_id} by {carrier}"


@shared_task
def stops_when_asked() -> str:
    if stop_requested():
        raise Stopped
    return "ran"


@shared_task
def raises_stopped() -> None:
    raise Stopped
