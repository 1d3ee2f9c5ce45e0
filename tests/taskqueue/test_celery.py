"""The Celery-style API on the engine: shared_task, delay, apply_async, signatures, revoke, eager
mode."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from taskqueue.celery import AsyncResult, EagerResult, TaskFailed, shared_task, states
from taskqueue.exceptions import SerializationError, TaskQueueError
from taskqueue.models import Task
from tests.conftest import recorded
from tests.taskqueue import sample_celery as c

pytestmark = pytest.mark.django_db


def test_calling_a_task_still_runs_it_here() -> None:
    assert c.multiply(6, 7) == 42
    assert not Task.objects.exists()


def test_delay_enqueues_and_a_worker_runs_it(drain) -> None:
    result = c.multiply.delay(6, 7)
    assert isinstance(result, AsyncResult) and result.status == states.PENDING
    row = Task.objects.get(pk=int(result.id))
    assert (row.kind, row.task_path, row.payload) == (
        "celery",
        "tests.taskqueue.sample_celery.multiply",
        {"args": [6, 7], "kwargs": {}},
    )
    drain()
    assert (result.status, result.result, result.ready(), result.successful()) == (
        states.SUCCESS,
        42,
        True,
        True,
    )
    assert AsyncResult(result.id).get(timeout=1) == 42


def test_apply_async_with_queue_priority_and_countdown(drain) -> None:
    result = c.notify.apply_async(
        (7,), {"channel": "sms"}, countdown=600, queue="urgent", priority=9
    )
    row = Task.objects.get(pk=int(result.id))
    assert (row.queue_name, row.priority) == ("urgent", 9)
    assert row.run_at > timezone.now() + timedelta(seconds=590)
    assert drain() == 0
    defaults = c.notify.delay(8)
    assert Task.objects.get(pk=int(defaults.id)).queue_name == "mail"
    assert Task.objects.get(pk=int(defaults.id)).priority == 3


def test_apply_async_with_an_eta(drain) -> None:
    eta = timezone.now() - timedelta(seconds=1)
    result = c.notify.apply_async((1,), eta=eta)
    drain("mail")
    assert result.get(timeout=1) == "email:1"
    with pytest.raises(TypeError, match="aware"):
        c.notify.apply_async((1,), eta=eta.replace(tzinfo=None))
    with pytest.raises(TypeError, match="countdown or eta"):
        c.notify.apply_async((1,), eta=eta, countdown=5)


def test_signatures_apply_later(drain) -> None:
    signature = c.multiply.s(3, 4)
    result = signature.apply_async(countdown=0)
    drain()
    assert result.get(timeout=1) == 12
    assert c.multiply.s(2, 2).delay().id != result.id


def test_autoretry_for_retries_then_succeeds_or_gives_up(drain, tmp_path) -> None:
    ok = c.unreliable.delay(str(tmp_path / "ok"), 2)
    given_up = c.unreliable.delay(str(tmp_path / "no"), 9)
    other_error = c.wrong_input.delay(str(tmp_path / "key"))
    for _ in range(4):
        drain()
    assert ok.get(timeout=1) == 3
    assert Task.objects.get(pk=int(ok.id)).attempts == 3
    assert given_up.status == states.FAILURE and Task.objects.get(pk=int(given_up.id)).attempts == 3
    assert other_error.status == states.FAILURE and (tmp_path / "key").read_text() == "1"


def test_a_failure_is_reported_with_its_traceback(drain) -> None:
    result = c.explode.delay("kaboom")
    drain()
    assert result.failed()
    with pytest.raises(TaskFailed, match="RuntimeError: kaboom") as raised:
        result.get(timeout=1)
    assert "Traceback (most recent call last)" in raised.value.traceback
    assert result.get(timeout=1, propagate=False).exc_class == "builtins.RuntimeError"


def test_a_task_waiting_for_its_retry_reads_as_retry(drain) -> None:
    result = c.retry_in_an_hour.delay()
    drain()
    assert result.status == states.RETRY and not result.ready()
    row = Task.objects.get(pk=int(result.id))
    assert row.run_at > timezone.now() + timedelta(minutes=59)
    assert row.errors[0]["exc_class"] == "builtins.ConnectionError"


def test_revoke_before_start_means_it_never_runs(drain, record_file) -> None:
    result = c.multiply.apply_async((1, 2), countdown=0)
    AsyncResult(result.id).revoke()
    assert result.status == states.REVOKED
    assert drain() == 0
    assert recorded(record_file) == []


def test_enqueue_inside_a_transaction_commits_or_rolls_back_with_it() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        c.multiply.delay(1, 1)
        raise RuntimeError("roll back")
    assert not Task.objects.exists()
    with transaction.atomic():
        c.multiply.delay(1, 1)
    assert Task.objects.count() == 1


def test_unstorable_arguments_fail_at_once_and_store_nothing() -> None:
    with pytest.raises(SerializationError):
        c.multiply.delay({1}, 2)
    assert not Task.objects.exists()


def test_eager_mode_runs_inline(settings, record_file) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True
    result = c.multiply.delay(5, 5)
    assert (
        isinstance(result, EagerResult) and result.status == states.SUCCESS and result.get() == 25
    )
    assert recorded(record_file) == ["multiply 5 5"]
    failed = c.explode.delay("eager failure")
    assert failed.failed() and isinstance(failed.result, RuntimeError)
    assert not Task.objects.exists()


def test_eager_mode_retries_autoretry_for_errors_inline(settings, tmp_path) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True
    recovers = c.unreliable.delay(str(tmp_path / "recovers"), 2)  # fails twice, max_retries 2
    assert (recovers.status, recovers.get(), recovers.retries) == (states.SUCCESS, 3, 2)
    gives_up = c.unreliable.delay(str(tmp_path / "gives-up"), 5)
    assert (gives_up.status, gives_up.retries, str(gives_up.result)) == (states.FAILURE, 2, "run 3")
    other = c.wrong_input.delay(str(tmp_path / "other"))  # not in autoretry_for: no retry
    assert (other.status, other.retries, (tmp_path / "other").read_text()) == (
        states.FAILURE,
        0,
        "1",
    )
    settings.CELERY_TASK_EAGER_PROPAGATES = True
    with pytest.raises(ConnectionError, match="run 3"):
        c.unreliable.delay(str(tmp_path / "propagates"), 5)
    assert not Task.objects.exists()


def test_eager_propagates_exceptions_when_asked(settings) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True
    with pytest.raises(RuntimeError, match="loud"):
        c.explode.delay("loud")


def test_bad_definitions_are_refused() -> None:
    with pytest.raises(TypeError, match="retry_kwargs takes max_retries and countdown"):
        shared_task(retry_kwargs={"retries": 3})
    with pytest.raises(ValueError, match="max_retries"):
        shared_task(max_retries=-1)
    for backoff in (0.5, -2, 0, float("inf"), float("nan")):
        with pytest.raises(
            ValueError, match="retry_backoff must be True, False or a factor of 1 or more"
        ):
            shared_task(retry_backoff=backoff)
    with pytest.raises(ValueError, match="retry_backoff_max"):
        shared_task(retry_backoff=True, retry_backoff_max=float("inf"))
    with pytest.raises(ValueError, match="countdown"):
        shared_task(default_retry_delay=-1)

    def local() -> None: ...

    with pytest.raises(TaskQueueError, match="module level"):
        shared_task(local)


@pytest.mark.parametrize("task_id", ["424242", "not-a-number", str(2**70)])
def test_an_unknown_result_id_reads_pending_as_in_celery(task_id: str) -> None:
    """An id pruned after RESULT_RETENTION (or never enqueued) is polled without crashing."""
    result = AsyncResult(task_id)
    assert (result.status, result.state, result.result, result.ready()) == (
        states.PENDING,
        states.PENDING,
        None,
        False,
    )
    with pytest.raises(TimeoutError):
        result.get(timeout=0.3, interval=0.1)
    result.revoke()  # nothing to revoke


def test_a_pruned_result_reads_pending(drain) -> None:
    result = c.ship.delay(7)
    drain()
    assert result.get(timeout=5) == "7 by post"
    Task.objects.filter(pk=int(result.id)).delete()  # what pruning does after RESULT_RETENTION
    assert (result.status, result.result) == (states.PENDING, None)
