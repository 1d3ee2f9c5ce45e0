"""The sign-up and contact pages answer at once and leave the email to a worker."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from apps.emails.models import ContactMessage
from apps.emails.tasks import WelcomeEmail, WelcomeEmailQueue, notify_team_of_contact
from taskqueue.models import Task
from taskqueue.testing import assert_enqueued

SIGN_UP = {
    "username": "ada",
    "email": "ada@example.com",
    "password1": "a long and unusual passphrase",
    "password2": "a long and unusual passphrase",
}
CONTACT = {
    "name": "Grace",
    "email": "grace@example.com",
    "message": "Does the worker run on PostgreSQL?",
}


def test_signing_up_creates_the_account_logs_in_and_queues_one_welcome_email(client, db) -> None:
    response = client.post(reverse("emails:signup"), SIGN_UP)
    home = client.get(
        response["Location"], secure=True
    )  # the session cookie is Secure, as in production

    user = User.objects.get(username="ada")
    assert home.context["user"] == user
    assert "A welcome email is on its way to ada@example.com" in home.text
    [task] = assert_enqueued(
        WelcomeEmailQueue, count=1, arg=WelcomeEmail(user_id=user.pk), queue_name="email"
    )
    assert task.dupe_key == f"welcome-{user.pk}"
    assert Task.objects.count() == 1


def test_signing_up_with_an_email_already_in_use_is_refused_and_queues_nothing(client, db) -> None:
    User.objects.create_user("first", "ADA@example.com", "whatever password")
    response = client.post(reverse("emails:signup"), SIGN_UP)

    assert response.status_code == 200
    assert "An account with this email address already exists." in response.text
    assert not User.objects.filter(username="ada").exists()
    assert not Task.objects.exists()


@pytest.mark.parametrize("missing", ["username", "email", "password2"])
def test_an_incomplete_sign_up_shows_the_form_again_and_queues_nothing(client, db, missing) -> None:
    response = client.post(reverse("emails:signup"), SIGN_UP | {missing: ""})

    assert response.status_code == 200 and response.context["form"].errors[missing]
    assert not User.objects.exists() and not Task.objects.exists()


def test_a_contact_message_is_kept_and_the_team_notification_queued(client, db) -> None:
    response = client.post(reverse("emails:contact"), CONTACT, follow=True)

    contact = ContactMessage.objects.get()
    assert contact.message == CONTACT["message"]
    assert "your message reached us" in response.text
    assert_enqueued(notify_team_of_contact, count=1, args=[contact.pk], queue_name="email")


def test_an_invalid_contact_message_keeps_nothing_and_queues_nothing(client, db) -> None:
    response = client.post(reverse("emails:contact"), CONTACT | {"email": "not an address"})

    assert response.context["form"].errors["email"]
    assert not ContactMessage.objects.exists() and not Task.objects.exists()


def test_the_pages_render_their_forms_with_labels(client, db) -> None:
    for name, field in (("emails:signup", "id_username"), ("emails:contact", "id_message")):
        response = client.get(reverse(name))
        assert response.status_code == 200
        assert f'for="{field}"' in response.text
