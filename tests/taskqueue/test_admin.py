"""The admin as an operator uses it: groups with counts, search, readable failures, retry and
cancel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from taskqueue.models import Status, Task
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:taskqueue_task_changelist")


@pytest.fixture
def operator(client: Client) -> Client:
    """A staff member who may view tasks and retry them."""
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_task", "change_task", "delete_task", "retry_task"]
        )
    )
    client.force_login(user)
    return client


@pytest.fixture
def viewer(client: Client) -> Client:
    """A staff member who may only look."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_task"))
    client.force_login(user)
    return client


@pytest.fixture
def failed_task(drain) -> Task:
    info = q.FailingQueue.add_task("smtp said no", note="welcome mail for ada@example.com")
    drain("failing")
    return Task.objects.get(pk=info.id)


def test_state_groups_show_their_counts(operator: Client, failed_task: Task) -> None:
    q.NoOpQueue.add_task(None)
    q.NoOpQueue.add_task(None, first_attempt_datetime=timezone.now() + timedelta(hours=1))
    page = operator.get(CHANGELIST).text
    for label in (
        "Failed (1)",
        "Ready (1)",
        "Scheduled (future) (1)",
        "Running (0)",
        "Abandoned (worker died) (0)",
    ):
        assert label in page
    failed_only = operator.get(CHANGELIST, {"state": "failed"})
    assert list(failed_only.context["cl"].result_list) == [failed_task]


@pytest.mark.parametrize(
    "term", ["welcome mail", "smtp said no", "sample_queues.py", "FailingQueue"]
)
def test_search_finds_tasks_by_note_error_traceback_and_path(
    operator: Client, failed_task: Task, term: str
) -> None:
    q.NoOpQueue.add_task(None, note="unrelated")
    found = operator.get(CHANGELIST, {"q": term}).context["cl"].result_list
    assert list(found) == [failed_task]


def test_search_by_id(operator: Client, failed_task: Task) -> None:
    q.NoOpQueue.add_task(None)
    assert list(operator.get(CHANGELIST, {"q": str(failed_task.pk)}).context["cl"].result_list) == [
        failed_task
    ]


def test_a_failed_task_page_shows_arguments_and_the_traceback(
    operator: Client, failed_task: Task
) -> None:
    page = operator.get(reverse("admin:taskqueue_task_change", args=[failed_task.pk])).text
    assert "smtp said no" in page and "Traceback (most recent call last)" in page
    assert "builtins.ValueError" in page
    assert "Retry now" in page


@pytest.mark.parametrize("stored", [{"not": "a list"}, "not a list", ["not an entry"], 7])
def test_a_task_whose_stored_error_history_is_corrupt_still_shows_its_pages(
    operator: Client, failed_task: Task, stored: object
) -> None:
    Task.objects.filter(pk=failed_task.pk).update(errors=stored)
    page = operator.get(reverse("admin:taskqueue_task_change", args=[failed_task.pk]))
    assert page.status_code == 200 and "taskqueue.CorruptRow" in page.text
    assert operator.get(CHANGELIST).status_code == 200
    assert operator.get(reverse("admin:taskqueue_dashboard")).status_code == 200


def test_retry_action_makes_failed_tasks_ready_at_once_and_refuses_running_ones(
    operator: Client, failed_task
) -> None:
    running = q.NoOpQueue.add_task(None)
    Task.objects.filter(pk=running.id).update(status=Status.RUNNING)
    response = operator.post(
        CHANGELIST,
        {"action": "retry_tasks", "_selected_action": [failed_task.pk, running.id]},
        follow=True,
    )
    shown = [str(message) for message in response.context["messages"]]
    assert "1 task(s) retried." in shown
    assert "1 task(s) still running or waiting, so not retried." in shown
    failed_task.refresh_from_db()
    assert (failed_task.status, failed_task.attempts) == (Status.READY, 0)
    assert failed_task.run_at <= timezone.now()
    assert failed_task.errors, "the history of the failure is kept"
    assert Task.objects.get(pk=running.id).status == Status.RUNNING


def test_retry_all_failed_matching_a_filter(operator: Client, drain) -> None:
    for _ in range(3):
        q.FailingQueue.add_task("boom")
    drain("failing")
    response = operator.post(
        CHANGELIST + "?state=failed",
        {
            "action": "retry_tasks",
            "select_across": "1",
            "_selected_action": [Task.objects.first().pk],
        },
    )
    assert response.status_code == 302
    assert Task.objects.filter(status=Status.READY).count() == 3


def test_retry_button_posts_with_csrf_and_needs_the_permission(
    failed_task: Task, viewer: Client
) -> None:
    url = reverse("admin:taskqueue_task_retry", args=[failed_task.pk])
    assert viewer.post(url).status_code == 403
    assert (
        "Retry now"
        not in viewer.get(reverse("admin:taskqueue_task_change", args=[failed_task.pk])).text
    )
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(User.objects.create_superuser("root", password="pw"))
    assert csrf_client.post(url).status_code == 403, "no CSRF token, no retry"
    assert csrf_client.get(url).status_code == 405
    failed_task.refresh_from_db()
    assert failed_task.status == Status.FAILED


def test_the_retry_button_retries(operator: Client, failed_task: Task) -> None:
    response = operator.post(reverse("admin:taskqueue_task_retry", args=[failed_task.pk]))
    assert response.status_code == 302
    failed_task.refresh_from_db()
    assert failed_task.status == Status.READY


def test_cancel_action_cancels_waiting_tasks_and_asks_running_ones_to_stop(
    operator: Client, failed_task
) -> None:
    waiting = q.NoOpQueue.add_task(None)
    running = q.NoOpQueue.add_task(None)
    Task.objects.filter(pk=running.id).update(status=Status.RUNNING)
    operator.post(
        CHANGELIST,
        {"action": "cancel_tasks", "_selected_action": [waiting.id, running.id, failed_task.pk]},
    )
    assert Task.objects.get(pk=waiting.id).status == Status.CANCELLED
    assert Task.objects.get(pk=running.id).cancel_requested
    assert Task.objects.get(pk=failed_task.pk).status == Status.FAILED


def test_waiting_tasks_can_be_edited_finished_ones_cannot(
    operator: Client, failed_task: Task
) -> None:
    waiting = q.NoOpQueue.add_task(None, note="old")
    url = reverse("admin:taskqueue_task_change", args=[waiting.id])
    form = operator.get(url).context["adminform"].form
    assert set(form.fields) == {"priority", "run_at", "note"}
    later = timezone.now() + timedelta(hours=2)
    response = operator.post(
        url,
        {
            "priority": "7",
            "run_at_0": later.strftime("%Y-%m-%d"),
            "run_at_1": later.strftime("%H:%M:%S"),
            "note": "new",
        },
    )
    assert response.status_code == 302, (
        response.context["adminform"].form.errors if response.context else ""
    )
    task = Task.objects.get(pk=waiting.id)
    assert (task.priority, task.note) == (7, "new")
    assert task.run_at > timezone.now() + timedelta(hours=1)
    failed_page = operator.get(reverse("admin:taskqueue_task_change", args=[failed_task.pk]))
    assert set(failed_page.context["adminform"].form.fields) == set()
    assert "Save" not in failed_page.text and "Retry now" in failed_page.text


def test_the_viewer_sees_no_retry_or_cancel_actions(viewer: Client, failed_task: Task) -> None:
    form = viewer.get(CHANGELIST).context["action_form"]
    actions = [] if form is None else [name for name, _ in form.fields["action"].choices]
    assert "retry_tasks" not in actions and "cancel_tasks" not in actions


def test_worker_processes_are_listed_with_their_heartbeat(
    operator: Client, admin_client: Client
) -> None:
    from taskqueue.engine import liveness

    liveness.register("default", "web-box", ["email*"], 4)
    page = admin_client.get(reverse("admin:taskqueue_workerprocess_changelist")).text
    assert "web-box" in page and "email*" in page and "s ago" in page


def test_pausing_and_resuming_a_queue_in_the_admin(admin_client: Client) -> None:
    from taskqueue import QueueInfo
    from taskqueue.models import PausedQueue

    q.NoOpQueue.add_task(None)
    response = admin_client.post(reverse("admin:taskqueue_pausedqueue_add"), {"name": "noop"})
    assert response.status_code == 302 and QueueInfo("noop").paused
    page = admin_client.get(reverse("admin:taskqueue_pausedqueue_changelist")).text
    assert "noop" in page
    paused = PausedQueue.objects.get(name="noop")
    admin_client.post(
        reverse("admin:taskqueue_pausedqueue_delete", args=[paused.pk]), {"post": "yes"}
    )
    assert not QueueInfo("noop").paused
