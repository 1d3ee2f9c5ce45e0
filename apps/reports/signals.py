"""What happens to reports around them: deleting a report deletes its files; a build task that ended
without finishing its report finishes it."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import transaction

from apps.reports.models import Report
from taskqueue.models import Status


def delete_report_files(sender: type[Report], instance: Report, **kwargs: Any) -> None:
    """Once the deletion commits: a rolled back deletion must still find its files."""
    for file in (instance.csv_file, instance.chart):
        if file:
            transaction.on_commit(partial(file.storage.delete, file.name))


def finish_ended_build(
    sender: type, task_id: int, task_path: str, state: str, **kwargs: Any
) -> None:
    """taskqueue's task_ended: a build cancelled before it started, cancelled by an operator, or out
    of attempts after its workers died ends without reaching the report's own code, whose page would
    then say "queued" forever. Finish such a report as the task ended."""
    from apps.reports.tasks import ENDED_UNEXPECTEDLY, build_report

    if task_path != build_report.module_path or state == Status.SUCCEEDED:
        return
    for report in Report.objects.filter(task_id=str(task_id), status__in=Report.ACTIVE):
        if state == Status.CANCELLED or report.cancel_requested:
            report.finish(Report.Status.CANCELLED)
        else:
            report.finish(Report.Status.FAILED, error=ENDED_UNEXPECTEDLY)
