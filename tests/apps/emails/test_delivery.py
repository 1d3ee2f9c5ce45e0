"""Emails sent by tasks reach a real SMTP server; the server's failures retry or fail as SMTP means
them to."""

from __future__ import annotations

import smtplib
import ssl
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from apps.emails.delivery import is_transient
from apps.emails.models import ContactMessage
from apps.emails.tasks import WelcomeEmail, WelcomeEmailQueue, notify_team_of_contact
from taskqueue.models import Status, Task


@pytest.fixture
def ada(db) -> User:
    return User.objects.create_user("ada", "ada@example.com", "correct horse battery")


def make_due(task_id: int) -> None:
    """Skip a retry's backoff: these tests are about what each attempt does, not about waiting."""
    Task.objects.filter(pk=task_id).update(run_at=timezone.now())


def test_the_welcome_email_has_text_and_html_parts_rendered_for_the_new_user(
    ada, smtp_server, task_queue, settings
):
    settings.SITE_URL = "https://tasks.example.com"
    WelcomeEmailQueue.add_task(WelcomeEmail(ada.pk))
    assert len(task_queue.run_pending(["email"])) == 1

    message = smtp_server.wait_for_message(timeout=5)
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Welcome to the task queue template"  # no text a stranger typed
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Hello ada," in text and "https://tasks.example.com/accounts/login/" in text
    assert "<h1" in html and 'href="https://tasks.example.com/accounts/login/"' in html


def test_the_contact_notification_goes_to_the_team_with_the_sender_as_reply_to(
    db, smtp_server, task_queue, settings
):
    settings.CONTACT_EMAIL = "team@tasks.example.com"
    contact = ContactMessage.objects.create(
        name="Grace", email="grace@example.com", message="Hello <team>!"
    )
    notify_team_of_contact.delay(contact.pk)
    assert len(task_queue.run_pending(["email"])) == 1

    message = smtp_server.wait_for_message(timeout=5)
    assert message["To"] == "team@tasks.example.com"
    assert message["Reply-To"] == "grace@example.com"
    assert "Hello <team>!" in message.get_body(("plain",)).get_content()
    assert "Hello &lt;team&gt;!" in message.get_body(("html",)).get_content()


def test_a_subject_holds_none_of_what_the_sender_typed(
    db, smtp_server, task_queue, settings
) -> None:
    contact = ContactMessage.objects.create(
        name="Tom & O'Brien\nBcc: x@example.com", email="t@example.com", message="Hi"
    )
    notify_team_of_contact.delay(contact.pk)
    task_queue.run_pending(["email"])

    assert (
        smtp_server.wait_for_message(timeout=5)["Subject"] == f"Contact form: message #{contact.pk}"
    )
    assert (
        smtp_server.messages[0]["X-Envelope-To"] == settings.CONTACT_EMAIL
    )  # no recipient smuggled in


def test_an_unreachable_mail_server_makes_the_email_retry_after_a_backoff(
    ada, smtp_server, task_queue
):
    smtp_server.stop()
    info = WelcomeEmailQueue.add_task(WelcomeEmail(ada.pk))
    before = timezone.now()
    task_queue.run_pending(["email"])

    task = Task.objects.get(pk=info.id)
    assert task.status == Status.READY and task.attempts == 1
    assert before + timedelta(seconds=1.5) < task.run_at < before + timedelta(seconds=5)
    assert task.last_error["exc_class"] == "apps.emails.delivery.TransientEmailError"
    assert "ConnectionRefusedError" in task.last_error["message"]


def test_an_email_that_never_gets_through_fails_after_its_attempts_with_the_reason(
    ada, smtp_server, task_queue
):
    smtp_server.stop()
    info = WelcomeEmailQueue.add_task(WelcomeEmail(ada.pk))
    for _ in range(WelcomeEmailQueue.max_attempts):
        make_due(info.id)
        task_queue.run_pending(["email"])

    task = Task.objects.get(pk=info.id)
    assert task.status == Status.FAILED and task.attempts == WelcomeEmailQueue.max_attempts
    assert len(task.errors) == WelcomeEmailQueue.max_attempts
    assert "ConnectionRefusedError" in task.last_error["message"]


def test_a_recipient_the_server_refuses_for_good_fails_at_once_with_the_server_reply(
    db, smtp_server, task_queue
):
    gone = User.objects.create_user("gone", "gone@example.com", "correct horse battery")
    smtp_server.refuse("gone@example.com", "550 5.1.1 <gone@example.com>: mailbox unavailable")
    info = WelcomeEmailQueue.add_task(WelcomeEmail(gone.pk))
    task_queue.run_pending(["email"])

    task = Task.objects.get(pk=info.id)
    assert task.status == Status.FAILED and task.attempts == 1
    assert task.last_error["exc_class"] == "smtplib.SMTPRecipientsRefused"
    assert (
        "550" in task.last_error["message"] and "mailbox unavailable" in task.last_error["message"]
    )
    assert smtp_server.messages == []


def test_a_busy_server_4xx_reply_is_retried_and_the_email_goes_once_it_accepts(
    ada, smtp_server, task_queue
):
    smtp_server.refuse("ada@example.com", "451 4.3.2 try again later")
    info = WelcomeEmailQueue.add_task(WelcomeEmail(ada.pk))
    task_queue.run_pending(["email"])
    assert Task.objects.get(pk=info.id).status == Status.READY

    smtp_server.mailbox.refused.clear()
    make_due(info.id)
    task_queue.run_pending(["email"])
    assert Task.objects.get(pk=info.id).status == Status.SUCCEEDED
    assert [m["To"] for m in smtp_server.messages] == ["ada@example.com"]


def test_a_welcome_for_an_account_deleted_meanwhile_sends_nothing_and_succeeds(
    ada, smtp_server, task_queue
):
    info = WelcomeEmailQueue.add_task(WelcomeEmail(ada.pk))
    ada.delete()
    task_queue.run_pending(["email"])
    assert Task.objects.get(pk=info.id).status == Status.SUCCEEDED
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), True),
        (smtplib.SMTPConnectError(421, b"too many connections"), True),
        (smtplib.SMTPDataError(452, b"insufficient storage"), True),
        (smtplib.SMTPDataError(554, b"message rejected as spam"), False),
        (smtplib.SMTPSenderRefused(553, b"sender not allowed", "noreply@localhost"), False),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), False),
        (
            smtplib.SMTPRecipientsRefused(
                {"a@example.com": (450, b"busy"), "b@example.com": (451, b"later")}
            ),
            True,
        ),
        (
            smtplib.SMTPRecipientsRefused(
                {"a@example.com": (450, b"busy"), "b@example.com": (550, b"no")}
            ),
            False,
        ),
        (smtplib.SMTPNotSupportedError("STARTTLS not supported"), False),
        (ssl.SSLCertVerificationError("certificate verify failed"), False),
    ],
)
def test_smtp_failures_are_transient_for_4xx_and_lost_connections_and_permanent_otherwise(
    error, transient
) -> None:
    assert is_transient(error) is transient
