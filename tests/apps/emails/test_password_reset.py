"""Password reset through the queue: the page answers at once, a worker sends the link, the link
works once."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from apps.emails.tasks import PasswordResetEmail, PasswordResetEmailQueue
from taskqueue.models import Task
from taskqueue.testing import assert_enqueued

RESET = reverse("password_reset")


@pytest.fixture
def ada(db) -> User:
    return User.objects.create_user("ada", "ada@example.com", "correct horse battery")


def test_a_reset_request_queues_an_email_whose_arguments_hold_no_link(client, ada) -> None:
    response = client.post(RESET, {"email": "ada@example.com"}, secure=True)
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    email = PasswordResetEmail(user_id=ada.pk, domain="testserver", protocol="https")
    assert_enqueued(PasswordResetEmailQueue, count=1, arg=email)
    assert Task.objects.count() == 1, "the arguments are all there is: no link"


def test_an_address_without_an_account_gets_the_same_answer_and_nothing_is_sent(client, db) -> None:
    response = client.post(RESET, {"email": "nobody@example.com"}, secure=True)
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert not Task.objects.exists()


def test_asking_again_while_an_email_waits_queues_no_second_one(client, ada) -> None:
    for _ in range(3):
        assert client.post(RESET, {"email": "ada@example.com"}, secure=True).status_code == 302
    assert Task.objects.count() == 1


def test_the_worker_sends_a_link_that_sets_a_new_password_once(
    client, ada, smtp_server, task_queue
) -> None:
    client.post(RESET, {"email": "ada@example.com"}, secure=True)
    assert [run.state for run in task_queue.run_pending(["email"])] == ["succeeded"]
    message = smtp_server.wait_for_message(timeout=5)
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Reset your password on the task queue template"
    link = re.search(
        r"https://testserver(/accounts/reset/\S+/)", message.get_body(("plain",)).get_content()
    )
    assert link, "the email carries the reset link"

    form = client.get(link.group(1), follow=True, secure=True)
    assert "Choose a new password" in form.text
    new = {"new_password1": "a brand new passphrase", "new_password2": "a brand new passphrase"}
    done = client.post(form.redirect_chain[-1][0], new, follow=True, secure=True)
    assert "Password changed" in done.text
    ada.refresh_from_db()
    assert ada.check_password("a brand new passphrase")
    again = client.get(link.group(1), follow=True, secure=True)
    assert "This link no longer works" in again.text


def test_the_login_page_links_the_reset(client, db) -> None:
    assert reverse("password_reset") in client.get(reverse("login"), secure=True).text
