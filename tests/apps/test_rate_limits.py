"""The forms that mail or try passwords answer 429 past their rate; pages and other clients go
on."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from taskqueue.models import Task

pytestmark = pytest.mark.django_db

FORMS = {
    "signup": (
        reverse("emails:signup"),
        lambda n: {
            "username": f"u{n}",
            "email": f"u{n}@example.com",
            "password1": "a long passphrase 1",
            "password2": "x",
        },
    ),
    "contact": (
        reverse("emails:contact"),
        lambda n: {"name": "G", "email": "g@example.com", "message": f"hi {n}"},
    ),
    "login": (reverse("login"), lambda n: {"username": f"someone{n}", "password": "wrong"}),
    "password_reset": (reverse("password_reset"), lambda n: {"email": f"nobody{n}@example.com"}),
}


@pytest.mark.parametrize("scope", FORMS)
def test_a_form_posted_past_its_rate_answers_429_and_does_nothing_more(
    client: Client, settings, scope: str
) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, scope: "3/h"}
    url, data = FORMS[scope]
    for n in range(3):
        assert client.post(url, data(n)).status_code != 429
    before = Task.objects.count()
    refused = client.post(url, data(3))
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 3600
    assert "Too many tries" in refused.text
    assert Task.objects.count() == before, "nothing was queued for the refused post"
    assert client.get(url).status_code == 200, "the page itself is not limited"
    other = Client(REMOTE_ADDR="192.0.2.7")
    assert other.post(url, data(4)).status_code != 429, "another client is counted apart"


def test_guessing_one_account_from_many_addresses_is_limited_by_the_account_name(
    settings, db
) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "login": "3/h"}
    User.objects.create_user("ada", "ada@example.com", "correct horse battery")
    for n in range(3):
        Client(REMOTE_ADDR=f"192.0.2.{n}").post(
            reverse("login"), {"username": "ada", "password": "guess"}
        )
    blocked = Client(REMOTE_ADDR="192.0.2.99").post(
        reverse("login"), {"username": "ADA", "password": "guess"}
    )
    assert blocked.status_code == 429


def test_the_admin_login_is_limited_too(client: Client, settings) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "login": "2/h"}
    for _ in range(2):
        client.post(reverse("admin:login"), {"username": "root", "password": "guess"})
    assert (
        client.post(reverse("admin:login"), {"username": "root", "password": "guess"}).status_code
        == 429
    )


def test_behind_the_trusted_proxy_the_address_it_appended_is_the_one_counted(
    client: Client, settings
) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "contact": "2/h"}
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    url, data = FORMS["contact"]
    for n in range(2):  # a client that forges the start of the header gains nothing
        client.post(url, data(n), HTTP_X_FORWARDED_FOR=f"10.0.0.{n}, 198.51.100.1")
    assert (
        client.post(url, data(2), HTTP_X_FORWARDED_FOR="10.9.9.9, 198.51.100.1").status_code == 429
    )
    assert client.post(url, data(3), HTTP_X_FORWARDED_FOR="198.51.100.2").status_code != 429


def test_a_bad_rate_is_reported_at_start_up(settings) -> None:
    from django.core.management.base import SystemCheckError

    settings.RATE_LIMITS = {"signup": "lots", "contact": "0/h", "login": "5/h"}
    with pytest.raises(SystemCheckError) as caught:
        call_command("check")
    report = str(caught.value)
    assert "RATE_LIMITS['signup']" in report and "RATE_LIMITS['contact']" in report
    assert "no rate for 'password_reset'" in report
