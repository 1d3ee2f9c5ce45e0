"""The report build, a `django.tasks` task that the task queue's worker runs, and what the web side
does with it: enqueue it and cancel it. (`signals.finish_ended_build` finishes a report whose task
ended without finishing it.)

The build goes step by step (a month of data per step, then the CSV, then the chart), saves its
progress on the Report row after each step and checks `stop_requested()` between steps. A stop is
either the owner's cancel (the row says `cancel_requested`) or the worker shutting down; in both
cases the build cleans up and raises `taskqueue.Stopped`: the queue then records a cancelled task,
or puts it back to run again, with its attempt uncounted.
"""

from __future__ import annotations

import csv
import io
import time
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.tasks import TaskResultStatus, task
from django.tasks.exceptions import TaskResultDoesNotExist

import taskqueue
from apps.reports.charts import bar_chart
from apps.reports.data import Sale, monthly_sales
from apps.reports.models import Report
from taskqueue import Stopped, cancel_requested, stop_requested

# The owner sees this; the operator sees the exception and its traceback on the task in the admin.
UNEXPECTED_ERROR = (
    "Something went wrong while building this report. The site's operators have the details "
    "(task {task_id}); please try again later."
)
ENDED_UNEXPECTEDLY = (
    "The build stopped before it finished (its task ended in the queue). Please request it again."
)
NOT_QUEUED = "The report could not be queued for building. Please try again later."
CSV_HEADER = ("month", "region", "product", "units", "revenue")


@task(queue_name="reports")
def build_report(report_id: int) -> dict[str, str] | None:
    """Build the report's CSV file and chart. Returns their storage names (kept in the task's
    result)."""
    report = Report.objects.filter(pk=report_id).first()
    if report is None:
        return None  # deleted while it waited
    if not report.start():
        report.finish(
            Report.Status.CANCELLED
        )  # cancelled as it started (a finished report stays as it is)
        return None
    report.delete_files()  # what an attempt that crashed may have left
    try:
        build(report)
    except Stopped:
        report.delete_files()
        report.refresh_from_db(fields=["cancel_requested"])
        if report.cancel_requested or cancel_requested():  # its owner, or an operator in the admin
            report.finish(Report.Status.CANCELLED)
        else:
            report.requeue()
        raise
    except Exception:
        report.delete_files()
        report.finish(
            Report.Status.FAILED, error=UNEXPECTED_ERROR.format(task_id=report.task_id or "unknown")
        )
        raise
    if not report.finish(Report.Status.SUCCEEDED):
        report.delete_files()  # finished meanwhile by someone else: keep no orphan files
        return None
    return {"csv": report.csv_file.name, "chart": report.chart.name}


def build(report: Report) -> None:
    """Run the steps, saving the progress after each one and honouring a stop request between
    them."""
    total = report.months + 2
    for done, _ in enumerate(build_steps(report), start=1):
        time.sleep(
            settings.REPORTS_STEP_DELAY_MS / 1000
        )  # demo pacing: the real work takes milliseconds
        if done < total:
            if not report.set_progress(100 * done // total):
                return  # deleted or finished meanwhile: nobody wants the rest
            if stop_requested():
                raise Stopped


def build_steps(report: Report) -> Iterator[None]:
    """The build, one step per `next()`: each month's data, then the CSV file, then the chart."""
    sales: list[Sale] = []
    for month in range(1, report.months + 1):
        sales.extend(monthly_sales(report.year, month))
        yield
    report.save_file("csv_file", report.download_name("csv"), sales_csv(sales))
    yield
    report.save_file("chart", report.download_name("svg"), sales_chart(report, sales).encode())
    yield


def sales_csv(sales: list[Sale]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    writer.writerows((f"{s.month:%Y-%m}", s.region, s.product, s.units, s.revenue) for s in sales)
    return buffer.getvalue().encode()


def sales_chart(report: Report, sales: list[Sale]) -> str:
    """Revenue per month, all regions and products together."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for sale in sales:
        totals[f"{sale.month:%b}"] += sale.revenue
    return bar_chart(f"Revenue per month, {report.year}", list(totals.items()))


def request_build(report: Report) -> None:
    """Enqueue the build once the transaction that saved the report commits, and keep its task id.

    Not before: a report that is rolled back must not be built, and a worker must not look for a
    report that other connections cannot see yet (the queue may live on a database of its own).
    """

    def enqueue() -> None:
        try:
            report.task_id = build_report.enqueue(report.pk).id
        except Exception:
            report.finish(Report.Status.FAILED, error=NOT_QUEUED)  # rather than "queued" forever
            raise  # logged by on_commit (robust): the report is saved, the page shows what happened
        Report.objects.filter(pk=report.pk).update(task_id=report.task_id)

    transaction.on_commit(enqueue, robust=True)


def cancel_report(report: Report) -> bool:
    """Ask the build to stop. A waiting build is cancelled at once; a running one stops at its next
    step (within a heartbeat of its worker). False if the report has already finished."""
    if not report.request_cancel():
        report.refresh_from_db(fields=["status"])
        return False
    if report.task_id:
        taskqueue.cancel([int(report.task_id)])
        try:
            # it was waiting
            ended = build_report.get_result(report.task_id).status == TaskResultStatus.FAILED
        except TaskResultDoesNotExist:  # pruned, or a row the build cannot be read from
            ended = False
        if ended:
            report.finish(Report.Status.CANCELLED)
    else:
        report.finish(Report.Status.CANCELLED)  # not enqueued yet: the task will find it finished
    return True
