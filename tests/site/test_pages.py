"""The home page and the health check answer as a visitor and a load balancer expect."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from django.test import Client
from django.urls import reverse


@pytest.mark.django_db
def test_home_page_explains_the_template_and_links_the_demos_the_admin_and_the_dashboard(
    client: Client,
) -> None:
    response = client.get(reverse("core:home"))
    assert response.status_code == 200
    assert "database-backed task queue" in response.text
    for name in (
        "emails:signup",
        "emails:contact",
        "reports:list",
        "admin:taskqueue_dashboard",
        "admin:index",
    ):
        assert f'href="{reverse(name)}"' in response.text, name


@pytest.mark.django_db
def test_healthz_reports_a_reachable_database(client: Client) -> None:
    response = client.get(reverse("core:healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert "no-cache" in response.headers["Cache-Control"]


@pytest.mark.django_db
def test_healthz_refuses_writes(client: Client) -> None:
    assert client.post(reverse("core:healthz")).status_code == 405


@pytest.mark.slow
def test_healthz_answers_503_when_the_database_is_unreachable(gunicorn, tmp_path) -> None:
    # A SQLite file in a directory that does not exist cannot be opened.
    base_url = gunicorn(DATABASE_URL=f"sqlite:///{tmp_path}/missing/dir/db.sqlite3")
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(base_url + "/healthz", timeout=5)
    assert raised.value.code == 503
    assert json.loads(raised.value.read()) == {"status": "error", "database": "unreachable"}


@pytest.mark.slow
def test_healthz_is_not_redirected_to_https(gunicorn) -> None:
    """Load balancers probe over plain HTTP even when every other page is redirected to HTTPS."""
    base_url = gunicorn(SECURE_SSL_REDIRECT="true")
    assert urllib.request.urlopen(base_url + "/healthz", timeout=5).status == 200
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as raised:
        opener.open(base_url + "/", timeout=5)
    assert raised.value.code == 301
    assert raised.value.headers["Location"].startswith("https://")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
