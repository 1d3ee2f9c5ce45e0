"""Every page is sent a Content-Security-Policy: scripts and styles from the site or with the
request's nonce."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from taskqueue.models import Task
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "name", ["core:home", "login", "password_reset", "emails:signup", "admin:login"]
)
def test_pages_carry_the_policy(client: Client, name: str) -> None:
    policy = client.get(reverse(name))["Content-Security-Policy"]
    assert (
        "default-src 'self'" in policy
        and "frame-ancestors 'none'" in policy
        and "object-src 'none'" in policy
    )
    assert re.search(r"script-src 'self'( 'nonce-[\w+/=-]+')?;", policy), (
        "no 'unsafe-inline', no other origin"
    )
    assert "unsafe" not in policy


def test_the_admin_task_page_style_carries_the_nonce_of_its_policy(admin_client: Client) -> None:
    info = q.NoOpQueue.add_task(None)
    response = admin_client.get(reverse("admin:taskqueue_task_change", args=[info.id]))
    nonce = re.search(r"'nonce-([\w+/=-]+)'", response["Content-Security-Policy"]).group(1)
    assert f'<style nonce="{nonce}">' in response.text
    assert Task.objects.filter(pk=info.id).exists()


def test_the_report_chart_keeps_its_own_stricter_policy(client: Client) -> None:
    from apps.reports.views import CHART_POLICY

    assert (
        "sandbox" in CHART_POLICY
    )  # the view sets it; the middleware leaves a view's own policy alone
