"""Retrying finished tasks whose dupe key an unfinished task holds now: those are refused and
reported, the rest of the selection is retried, and a surrounding transaction goes on."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from taskqueue.engine import operations
from taskqueue.models import PausedQueue, Status, Task
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:taskqueue_task_changelist")


@pytest.fixture
def held_key(drain) -> dict[str, int]:
    """A failed task with dupe key "k" whose key a newer, waiting task holds; a failed one without a
    key."""
    keyed = q.FailingQueue.add_task("first", dupe_key="k").id
    plain = q.FailingQueue.add_task("plain").id
    drain("failing")
    holder = q.FailingQueue.add_task("second", dupe_key="k").id
    return {"keyed": keyed, "plain": plain, "holder": holder}


def statuses(*ids: int) -> list[str]:
    return [Task.objects.get(pk=pk).status for pk in ids]


def test_a_task_whose_dupe_key_is_in_use_is_refused_and_the_others_are_retried(
    held_key: dict[str, int],
) -> None:
    result = operations.retry([held_key["keyed"], held_key["plain"]])
    assert (result.done, result.refused) == (1, 1)
    assert result.refusals == {held_key["keyed"]: operations.DUPE_KEY_IN_USE}
    assert statuses(held_key["keyed"], held_key["plain"], held_key["holder"]) == [
        Status.FAILED,
        Status.READY,
        Status.READY,
    ]


def test_a_key_taken_after_the_check_is_refused_by_the_database_row_by_row(
    held_key: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the pre-check cannot close (a task enqueued with the key meanwhile): the constraint
    refuses the bulk update, and the tasks are retried one by one, each in its own savepoint."""
    monkeypatch.setattr(operations, "_dupe_keys_taken", lambda using, rows: [])
    result = operations.retry([held_key["keyed"], held_key["plain"]])
    assert (result.done, result.refused) == (1, 1)
    assert result.refusals == {held_key["keyed"]: operations.DUPE_KEY_IN_USE}
    assert statuses(held_key["keyed"], held_key["plain"]) == [Status.FAILED, Status.READY]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("race", [False, True], ids=["pre-checked", "refused by the database"])
def test_a_refused_retry_leaves_the_callers_transaction_usable(
    held_key: dict[str, int], monkeypatch: pytest.MonkeyPatch, race: bool
) -> None:
    if race:
        monkeypatch.setattr(operations, "_dupe_keys_taken", lambda using, rows: [])
    with transaction.atomic():
        PausedQueue.objects.create(name="before", paused_at=timezone.now())
        result = operations.retry([held_key["keyed"], held_key["plain"]])
        PausedQueue.objects.create(name="after", paused_at=timezone.now())
    assert result.refusals == {held_key["keyed"]: operations.DUPE_KEY_IN_USE}
    assert set(PausedQueue.objects.values_list("name", flat=True)) == {"before", "after"}
    assert statuses(held_key["plain"]) == [Status.READY]


def test_of_selected_tasks_sharing_a_key_only_the_newest_is_retried(drain) -> None:
    older = q.FailingQueue.add_task("one", dupe_key="k").id
    drain("failing")
    newer = q.FailingQueue.add_task("two", dupe_key="k").id
    drain("failing")
    result = operations.retry([older, newer])
    assert (result.done, result.refusals) == (1, {older: operations.DUPE_KEY_IN_USE})
    assert statuses(older, newer) == [Status.FAILED, Status.READY]


def test_the_same_key_in_another_queue_is_no_conflict(drain) -> None:
    failed = q.FailingQueue.add_task("one", dupe_key="k").id
    drain("failing")
    q.NoOpQueue.add_task(None, dupe_key="k")
    assert operations.retry([failed]) == operations.Result(done=1, refused=0)


@pytest.fixture
def operator(client: Client) -> Client:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_task", "change_task", "retry_task"])
    )
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_admin_action_retries_the_others_and_says_how_many_keys_were_in_use(
    operator: Client, held_key: dict[str, int]
) -> None:
    running = q.NoOpQueue.add_task(None).id
    Task.objects.filter(pk=running).update(status=Status.RUNNING)
    selected = [held_key["keyed"], held_key["plain"], running]
    response = operator.post(
        CHANGELIST, {"action": "retry_tasks", "_selected_action": selected}, follow=True
    )
    assert response.status_code == 200
    assert messages_of(response) == [
        "1 task(s) retried.",
        "1 task(s) still running or waiting, so not retried.",
        "1 task(s) not retried because their dupe key is in use by an unfinished task of the "
        "same queue.",
    ]
    assert statuses(held_key["keyed"], held_key["plain"]) == [Status.FAILED, Status.READY]


def test_the_retry_button_says_the_dupe_key_is_in_use(
    operator: Client, held_key: dict[str, int]
) -> None:
    response = operator.post(
        reverse("admin:taskqueue_task_retry", args=[held_key["keyed"]]), follow=True
    )
    assert response.status_code == 200
    assert messages_of(response) == [
        "1 task(s) not retried because their dupe key is in use by an unfinished task of the "
        "same queue."
    ]
    assert statuses(held_key["keyed"]) == [Status.FAILED]
