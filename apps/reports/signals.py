"""Deleting a report (in the admin, or with its owner) deletes its files from media storage too."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction

from apps.reports.models import Report


def delete_report_files(sender: type[Report], instance: Report, **kwargs: Any) -> None:
    """Once the deletion commits: a rolled back deletion must still find its files."""
    for file in (instance.csv_file, instance.chart):
        if file:
            transaction.on_commit(partial(file.storage.delete, file.name))
