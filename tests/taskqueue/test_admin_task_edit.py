"""Editing a waiting task in the admin never undoes a worker's claim or outcome: only the edited
fields are written, and only while the task still waits as it did when the form was read."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection, connections
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from taskqueue.admin import TaskAdmin
from taskqueue.models import Status, Task
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.django_db
LATER = timezone.now() + timedelta(hours=2)
EDIT = {
    "priority": "7",
    "run_at_0": LATER.strftime("%Y-%m-%d"),
    "run_at_1": LATER.strftime("%H:%M:%S"),
    "note": "old",
}
NOT_SAVED = "was not saved: a worker claimed it or it finished after this form was loaded"


@pytest.fixture
def operator(client: Client) -> Client:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_task", "change_task"]))
    client.force_login(user)
    return client


@pytest.fixture
def waiting() -> Task:
    return Task.objects.get(pk=q.NoOpQueue.add_task(None, note="old").id)


def open_form(operator: Client, task: Task) -> str:
    """GET the change page as the operator's browser does; return the URL its form posts to."""
    url = reverse("admin:taskqueue_task_change", args=[task.pk])
    page = operator.get(url)
    assert set(page.context["adminform"].form.fields) == {"priority", "run_at", "note"}
    return url + page.context["form_url"]


def claim(task: Task) -> None:
    """What a worker's claim does to the row."""
    Task.objects.filter(pk=task.pk).update(
        status=Status.RUNNING, claims=F("claims") + 1, started_at=timezone.now()
    )


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_only_the_edited_fields_are_written(
    operator: Client, waiting: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column the form does not edit, changed after the admin read the row for the POST, keeps its
    value."""
    save_form: Callable = TaskAdmin.save_form

    def change_meanwhile(self, request, form, change):
        Task.objects.filter(pk=waiting.pk).update(
            attempts=2, errors=[{"exc_class": "builtins.OSError"}]
        )
        return save_form(self, request, form, change)

    monkeypatch.setattr(TaskAdmin, "save_form", change_meanwhile)
    response = operator.post(open_form(operator, waiting), EDIT)
    assert response.status_code == 302
    task = Task.objects.get(pk=waiting.pk)
    assert (task.priority, task.note, task.status, task.attempts, len(task.errors)) == (
        7,
        "old",
        Status.READY,
        2,
        1,
    )
    assert task.run_at > timezone.now() + timedelta(hours=1)


def test_a_task_claimed_between_get_and_post_is_left_as_the_worker_made_it(
    operator: Client, waiting: Task
) -> None:
    action = open_form(operator, waiting)
    claim(waiting)
    response = operator.post(action, EDIT, follow=True)
    assert response.status_code == 200
    assert any(NOT_SAVED in message for message in messages_of(response))
    task = Task.objects.get(pk=waiting.pk)
    assert (task.status, task.priority, task.claims) == (Status.RUNNING, 0, 1)


@pytest.mark.parametrize("outcome", [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED])
def test_a_task_finished_between_get_and_post_stays_finished(
    operator: Client, waiting: Task, outcome: Status
) -> None:
    action = open_form(operator, waiting)
    Task.objects.filter(pk=waiting.pk).update(status=outcome, finished_at=timezone.now())
    response = operator.post(action, EDIT, follow=True)
    assert any(NOT_SAVED in message for message in messages_of(response))
    assert Task.objects.get(pk=waiting.pk).status == outcome


def test_a_task_claimed_and_put_back_between_get_and_post_is_not_saved(
    operator: Client, waiting: Task
) -> None:
    """Waiting again, but not as the operator saw it: the claim count tells."""
    action = open_form(operator, waiting)
    Task.objects.filter(pk=waiting.pk).update(claims=F("claims") + 1, priority=3)
    response = operator.post(action, EDIT, follow=True)
    assert any(NOT_SAVED in message for message in messages_of(response))
    assert Task.objects.get(pk=waiting.pk).priority == 3
    assert open_form(operator, waiting).endswith("_claims=1"), (
        "the page shown next offers a fresh form"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite: the admin's transaction begins IMMEDIATE, so no claim can come between "
    "its read and write",
)
def test_a_claim_committed_while_the_post_is_handled_is_not_reverted(
    operator: Client, waiting: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker claims the task (and commits, on its own connection) after the admin read the row
    for the POST and before it writes: the admin's write must not set the task back to ready."""
    save_form: Callable = TaskAdmin.save_form

    def claim_meanwhile(self, request, form, change):
        worker = threading.Thread(target=claim_on_another_connection, args=[waiting])
        worker.start()
        worker.join()
        return save_form(self, request, form, change)

    monkeypatch.setattr(TaskAdmin, "save_form", claim_meanwhile)
    response = operator.post(open_form(operator, waiting), EDIT, follow=True)
    assert any(NOT_SAVED in message for message in messages_of(response))
    task = Task.objects.get(pk=waiting.pk)
    assert (task.status, task.priority, task.claims) == (Status.RUNNING, 0, 1)


def claim_on_another_connection(task: Task) -> None:
    try:
        claim(task)
    finally:
        connections.close_all()
