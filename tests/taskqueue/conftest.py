"""Helpers for the engine's tests."""

from __future__ import annotations

from taskqueue.models import Task


def status_counts() -> dict[str, int]:
    from django.db.models import Count

    return {
        row["status"]: row["n"] for row in Task.objects.values("status").annotate(n=Count("id"))
    }
