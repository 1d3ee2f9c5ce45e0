"""In a real browser: an operator watches the queue dashboard keep itself current, and retries a
failure from it."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from taskqueue.admin import TaskAdmin
from taskqueue.models import Status, Task
from tests.browser import screenshot
from tests.conftest import recorded, wait_until
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.slow


def status(task_id: int) -> str:
    return Task.objects.get(pk=task_id).status


def test_an_operator_watches_the_dashboard_and_retries_a_failure(
    page,
    live_server,
    workers,
    record_file,
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expect = pytest.importorskip("playwright.sync_api").expect
    monkeypatch.setattr(
        TaskAdmin, "dashboard_refresh_seconds", 1
    )  # the live server runs in this process
    User.objects.create_superuser("operator", "operator@example.com", "correct horse battery")
    cause = tmp_path / "config.json"
    failing = q.NeedsFixQueue.add_task(str(cause))
    first = q.RecordingQueue.add_task("first")
    workers.start("--queues", "needs-fix,recording", "--name", "dash-worker", "--interval", "0.2")
    wait_until(
        lambda: (status(failing.id), status(first.id)) == (Status.FAILED, Status.SUCCEEDED),
        timeout=30,
        message="one task failed and one succeeded",
    )

    page.goto(live_server.url + reverse("admin:taskqueue_dashboard"))
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Queue dashboard", level=1)).to_be_visible()
    workers_table = page.get_by_role("table", name="Worker processes")
    expect(workers_table).to_contain_text("dash-worker")
    expect(workers_table.get_by_role("row", name=re.compile("dash-worker"))).to_contain_text(
        "alive"
    )
    expect(page.locator("#tq-workers-alive")).to_have_text("1")
    expect(page.locator("#tq-succeeded-total")).to_have_text("1")
    expect(page.locator("#tq-failed-total")).to_have_text("1")
    needs_fix = page.get_by_role("article", name="needs-fix")
    expect(needs_fix.get_by_role("link", name="1 failed in needs-fix")).to_be_visible()
    expect(
        page.get_by_role("img", name=re.compile(r"^All queues, succeeded per minute: 1 succeeded"))
    ).to_be_visible()
    failures = page.get_by_role("table", name="Latest failed tasks")
    expect(failures).to_contain_text("FileNotFoundError")

    # A task that finishes after the page loaded shows up without a reload.
    page.evaluate("window.loadedOnce = true")
    q.RecordingQueue.add_task("second")
    expect(page.locator("#tq-succeeded-total")).to_have_text("2", timeout=20_000)
    assert page.evaluate("window.loadedOnce === true"), (
        "the page was reloaded instead of updating itself"
    )
    expect(page.locator("#tq-updated")).to_contain_text(re.compile(r"Updated at \d\d:\d\d:\d\d"))
    screenshot(page, "queue-dashboard")

    # Updates leave what the operator opened open, and focus where it was.
    page.get_by_text("The numbers per minute").click()
    updated = page.locator("#tq-updated").text_content()
    expect(page.locator("#tq-updated")).not_to_have_text(updated)
    expect(page.locator("#tq-numbers")).to_have_attribute("open", "")
    expect(page.locator("#tq-numbers-summary")).to_be_focused()
    expect(page.get_by_role("table", name=re.compile("Tasks finished per minute"))).to_be_visible()

    # On a phone the cards stack and tables scroll inside themselves: the page never scrolls
    # sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "queue-dashboard-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.emulate_media(
        color_scheme="dark"
    )  # the admin's dark theme: the dashboard follows its colours
    screenshot(page, "queue-dashboard-dark")
    page.emulate_media(color_scheme="light")

    cause.write_text("{}")  # the operator fixes the cause, then retries from the dashboard
    page.get_by_role("button", name=f"Retry task {failing.id}").click()
    expect(page.locator(".messagelist")).to_contain_text("1 task(s) retried.")
    expect(page.get_by_role("heading", name="Queue dashboard", level=1)).to_be_visible()
    wait_until(
        lambda: f"{failing.id} fixed" in recorded(record_file),
        timeout=15,
        message="a worker ran the retry",
    )
    wait_until(
        lambda: status(failing.id) == Status.SUCCEEDED, timeout=15, message="the retry succeeded"
    )
    expect(page.locator("#tq-succeeded-total")).to_have_text("3", timeout=20_000)
    expect(page.get_by_role("button", name=f"Retry task {failing.id}")).to_have_count(0)

    # Updates can be paused (and resumed), for whoever needs the page to hold still.
    page.get_by_role("button", name="Pause updates").click()
    expect(page.locator("#tq-updated")).to_have_text("Updates paused.")
    late = q.RecordingQueue.add_task("while paused")
    wait_until(
        lambda: status(late.id) == Status.SUCCEEDED, timeout=15, message="the task succeeded"
    )
    page.wait_for_timeout(2_500)  # two refresh intervals
    expect(page.locator("#tq-succeeded-total")).to_have_text("3")
    page.get_by_role("button", name="Resume updates").click()
    expect(page.locator("#tq-succeeded-total")).to_have_text("4")
