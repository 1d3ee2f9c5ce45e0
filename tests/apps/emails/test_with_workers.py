"""A real worker process sends the site's emails to a real SMTP server, riding out the server's
absence."""

from __future__ import annotations

import pytest
from django.urls import reverse

from taskqueue.models import Status, Task
from tests.apps.emails.test_views import CONTACT, SIGN_UP
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def test_a_welcome_email_queued_while_the_mail_server_is_down_arrives_once_it_is_back(
    client, workers, smtp_server
) -> None:
    smtp_server.stop()
    client.post(reverse("emails:signup"), SIGN_UP)
    workers.start("--queues", "email", EMAIL_URL=smtp_server.url)

    wait_until(lambda: Task.objects.get().errors, timeout=15, message="the first attempt failed")
    task = Task.objects.get()
    assert task.status in (
        Status.READY,
        Status.RUNNING,
    )  # waiting out its backoff, or on its next attempt
    assert "ConnectionRefusedError" in task.last_error["message"]

    smtp_server.start()
    message = smtp_server.wait_for_message(timeout=20)  # the backoff is 2 s, then 4 s
    assert message["To"] == "ada@example.com"
    wait_until(
        lambda: Task.objects.get().status == Status.SUCCEEDED,
        timeout=5,
        message="the task succeeded",
    )
    assert len(smtp_server.messages) == 1


def test_a_contact_message_reaches_the_team_through_the_celery_style_task(
    client, workers, smtp_server
) -> None:
    client.post(reverse("emails:contact"), CONTACT)
    workers.start(
        "--queues", "email", EMAIL_URL=smtp_server.url, CONTACT_EMAIL="team@tasks.example.com"
    )

    message = smtp_server.wait_for_message(timeout=15)
    assert message["To"] == "team@tasks.example.com" and message["Reply-To"] == CONTACT["email"]
    wait_until(
        lambda: Task.objects.get().status == Status.SUCCEEDED,
        timeout=5,
        message="the task succeeded",
    )
