"""Every admin action checks a permission: staff who may only look can run none of them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from taskqueue import recurring
from taskqueue.models import RecurringTask, Status, Task
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.django_db
NOOP = "tests.taskqueue.sample_queues.NoOpQueue"


def staff(client: Client, name: str, *codenames: str) -> Client:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def schedule() -> RecurringTask:
    return recurring.schedule_recurring("nightly", NOOP, "0 3 * * *")


def post_action(client: Client, model: str, action: str, pk: int) -> None:
    client.post(
        reverse(f"admin:taskqueue_{model}_changelist"), {"action": action, "_selected_action": [pk]}
    )


@pytest.mark.parametrize("action", ["enable", "disable", "run_now"])
def test_staff_who_may_only_view_recurring_tasks_cannot_run_their_actions(
    client: Client, schedule: RecurringTask, action: str
) -> None:
    viewer = staff(client, "viewer", "view_recurringtask")
    RecurringTask.objects.filter(pk=schedule.pk).update(enabled=action == "disable")
    page = viewer.get(reverse("admin:taskqueue_recurringtask_changelist")).text
    assert f'value="{action}"' not in page, "the action is not offered"
    post_action(viewer, "recurringtask", action, schedule.pk)
    assert RecurringTask.objects.get(pk=schedule.pk).enabled is (action == "disable"), (
        "nothing changed"
    )
    assert not Task.objects.exists(), "nothing was enqueued"


@pytest.mark.parametrize("action", ["enable", "disable", "run_now"])
def test_staff_who_may_change_recurring_tasks_run_their_actions(
    client: Client, schedule: RecurringTask, action: str
) -> None:
    editor = staff(client, "editor", "view_recurringtask", "change_recurringtask")
    RecurringTask.objects.filter(pk=schedule.pk).update(enabled=action == "disable")
    post_action(editor, "recurringtask", action, schedule.pk)
    if action == "run_now":
        assert Task.objects.filter(task_path=NOOP).count() == 1
    else:
        assert RecurringTask.objects.get(pk=schedule.pk).enabled is (action == "enable")


@pytest.mark.parametrize(
    ("action", "needs", "before"),
    [
        ("retry_tasks", "retry_task", Status.FAILED),
        ("cancel_tasks", "retry_task", Status.READY),
        ("delete_selected", "delete_task", Status.FAILED),
    ],
)
def test_task_actions_need_their_permission(
    client: Client, action: str, needs: str, before: str
) -> None:
    info = q.NoOpQueue.add_task(None)
    Task.objects.filter(pk=info.id).update(status=before)
    extra = {"post": "yes"} if action == "delete_selected" else {}  # past the confirmation page
    changelist = reverse("admin:taskqueue_task_changelist")
    viewer = staff(client, "viewer", "view_task")
    viewer.post(changelist, {"action": action, "_selected_action": [info.id], **extra})
    assert Task.objects.filter(pk=info.id, status=before).exists(), f"{action} ran without {needs}"
    allowed = staff(Client(), "allowed", "view_task", needs)
    allowed.post(changelist, {"action": action, "_selected_action": [info.id], **extra})
    assert not Task.objects.filter(pk=info.id, status=before).exists(), (
        f"{action} did not run with {needs}"
    )


def test_a_superuser_runs_every_action(admin_client: Client, schedule: RecurringTask) -> None:
    post_action(admin_client, "recurringtask", "run_now", schedule.pk)
    assert Task.objects.count() == 1


@pytest.mark.parametrize(
    ("model", "query", "status"),
    [
        ("task", "payload__contains=a", 400),
        ("task", "errors__icontains=smtp", 400),
        ("task", "return_value__isnull=false", 400),
        ("task", "state=failed&queue_name=emails", 200),
        ("task", "age=24h", 200),
        ("recurringtask", "enabled__exact=1&static__exact=0", 200),
        ("recurringtask", "task_path__startswith=tests", 400),
        ("workerprocess", "hostname__startswith=a", 400),
    ],
)
def test_changelists_filter_only_by_their_list_filters(
    admin_client: Client, model: str, query: str, status: int
) -> None:
    q.NoOpQueue.add_task(None)
    response = admin_client.get(f"{reverse(f'admin:taskqueue_{model}_changelist')}?{query}")
    assert response.status_code == status
