"""In a real browser: an operator finds a failed task in the admin, retries it, and a worker runs
it."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from taskqueue.models import Status, Task
from tests.browser import screenshot
from tests.conftest import recorded, wait_until
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.slow


def test_an_operator_retries_a_failed_task_from_the_admin(
    page, live_server, workers, record_file, tmp_path
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    User.objects.create_superuser("operator", "operator@example.com", "correct horse battery")
    cause = tmp_path / "config.json"
    info = q.NeedsFixQueue.add_task(str(cause), note="import of the customer list")
    workers.start("--queues", "needs-fix")
    wait_until(
        lambda: Task.objects.get(pk=info.id).status == Status.FAILED,
        timeout=20,
        message="the task failed",
    )

    page.goto(f"{live_server.url}/admin/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Tasks", exact=True).click()
    page.get_by_role("link", name=re.compile(r"^Failed \(1\)$")).click()
    page.get_by_role("link", name="tests.taskqueue.sample_queues.NeedsFixQueue").click()
    expect(page.locator(".taskqueue-error")).to_contain_text("FileNotFoundError")
    expect(page.locator(".taskqueue-error pre")).to_contain_text(
        "Traceback (most recent call last)"
    )
    screenshot(page, "admin-failed-task")

    cause.write_text("{}")  # the operator fixes the cause, then retries
    page.get_by_role("button", name="Retry now").click()
    expect(page.locator(".messagelist")).to_contain_text("1 task(s) retried.")
    wait_until(
        lambda: f"{info.id} fixed" in recorded(record_file),
        timeout=10,
        message="a worker ran the retry",
    )
    wait_until(
        lambda: Task.objects.get(pk=info.id).status == Status.SUCCEEDED,
        timeout=10,
        message="success",
    )
    page.reload()
    expect(page.locator(".field-state")).to_contain_text("succeeded")
