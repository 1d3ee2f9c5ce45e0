"""The pages as their users meet them: requesting, following, cancelling and downloading a report,
each user seeing only their own; and the admin page operators use."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import User
from django.db import DatabaseError
from django.tasks import TaskResultStatus
from django.test import Client
from django.urls import reverse

from apps.reports.forms import MAX_ACTIVE_REPORTS
from apps.reports.models import Report
from apps.reports.tasks import NOT_QUEUED, build_report, request_build
from taskqueue import cancel
from taskqueue.models import Status, Task
from tests.apps.reports.conftest import media_files

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueued_report(
    make_report: Callable[..., Report], django_capture_on_commit_callbacks
) -> Report:
    """A report whose build waits in the queue."""
    report = make_report()
    with django_capture_on_commit_callbacks(execute=True):
        request_build(report)
    return report


@pytest.fixture
def stranger_client(client: Client, stranger: User) -> Client:
    client.force_login(stranger)
    return client


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_pages_ask_for_a_login_first(client: Client) -> None:
    response = client.get(reverse("reports:list"))
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/reports/"


def test_requesting_a_report_enqueues_its_build_once_the_report_is_committed(
    owner_client: Client, owner: User, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        response = owner_client.post(reverse("reports:create"), {"year": 2023, "months": 6})
    report = Report.objects.get()
    assert (report.owner, report.year, report.months, report.status) == (
        owner,
        2023,
        6,
        Report.Status.QUEUED,
    )
    assert response.status_code == 302 and response["Location"] == report.get_absolute_url()
    assert (
        report.task_id == "" and not Task.objects.exists()
    )  # nothing is enqueued before the commit

    callbacks[0]()
    report.refresh_from_db()
    result = build_report.get_result(report.task_id)
    assert (result.status, result.args, result.task.queue_name) == (
        TaskResultStatus.READY,
        [report.pk],
        "reports",
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"year": 1999, "months": 12}, "year"),
        ({"year": "last", "months": 12}, "year"),
        ({"year": 2024, "months": 0}, "months"),
        ({"year": 2024, "months": 13}, "months"),
        ({"year": 2024}, "months"),
    ],
)
def test_the_form_refuses_values_out_of_range_next_to_the_field(
    owner_client: Client, data: dict, field: str
) -> None:
    response = owner_client.post(reverse("reports:create"), data)
    assert response.status_code == 200 and list(response.context["form"].errors) == [field]
    assert not Report.objects.exists()


def test_the_form_refuses_a_report_beyond_the_limit_in_progress(
    owner_client: Client, make_report: Callable[..., Report]
) -> None:
    for _ in range(MAX_ACTIVE_REPORTS):
        make_report()
    make_report(status=Report.Status.SUCCEEDED)  # finished ones do not count

    response = owner_client.post(reverse("reports:create"), {"year": 2024, "months": 12})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        f"You already have {MAX_ACTIVE_REPORTS} reports in progress: wait for one to finish, or "
        "cancel one."
    ]
    assert Report.objects.count() == MAX_ACTIVE_REPORTS + 1


def test_the_list_shows_the_users_own_reports_and_the_form(
    owner_client: Client, make_report: Callable[..., Report], stranger: User
) -> None:
    mine = make_report(year=2022)
    make_report(owner=stranger, year=2021)

    response = owner_client.get(reverse("reports:list"))

    assert list(response.context["report_list"]) == [mine]
    assert "Sales 2022, January to March" in response.text and "2021" not in response.text
    assert 'name="year"' in response.text and 'action="/reports/new/"' in response.text


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("get", "reports:detail"),
        ("get", "reports:status"),
        ("get", "reports:download_csv"),
        ("get", "reports:download_chart"),
        ("get", "reports:chart"),
        ("post", "reports:cancel"),
    ],
)
def test_another_users_report_is_not_found(
    stranger_client: Client, built_report: Report, method: str, name: str
) -> None:
    response = getattr(stranger_client, method)(reverse(name, args=[built_report.pk]))
    assert response.status_code == 404


def test_the_status_is_json_for_the_pages_script(
    owner_client: Client, make_report: Callable[..., Report]
) -> None:
    report = make_report(status=Report.Status.RUNNING, progress=40)
    response = owner_client.get(reverse("reports:status", args=[report.pk]))
    assert response.json() == {
        "status": "running",
        "label": "Running",
        "progress": 40,
        "finished": False,
        "cancellable": True,
    }
    assert "no-cache" in response["Cache-Control"]


def test_the_status_answers_a_signed_out_script_with_403(
    client: Client, make_report: Callable[..., Report]
) -> None:
    assert client.get(reverse("reports:status", args=[make_report().pk])).status_code == 403


def test_a_running_report_shows_its_progress_a_cancel_button_and_a_refresh_link(
    owner_client: Client, make_report: Callable[..., Report]
) -> None:
    report = make_report(status=Report.Status.RUNNING, progress=35)
    response = owner_client.get(report.get_absolute_url())
    html = response.text
    assert '<progress max="100" value="35"' in html and "35%" in html
    assert 'role="status" aria-live="polite"' in html
    assert "Cancel report" in html and ">Refresh</a>" in html
    assert "reports/progress.js" in html and "<script>" not in html
    assert "Download CSV" not in html


def test_a_finished_report_shows_its_downloads_and_chart_and_no_script(
    owner_client: Client, built_report: Report
) -> None:
    html = owner_client.get(built_report.get_absolute_url()).text
    assert "Download CSV" in html and f'src="/reports/{built_report.pk}/chart/"' in html
    assert "progress.js" not in html and "Cancel report" not in html and "Refresh" not in html


def test_a_failed_report_shows_the_owner_its_error(
    owner_client: Client, make_report: Callable[..., Report]
) -> None:
    report = make_report(status=Report.Status.FAILED, error="It broke; please try again later.")
    assert "It broke; please try again later." in owner_client.get(report.get_absolute_url()).text


def test_the_owner_downloads_the_csv_and_the_chart_as_attachments(
    owner_client: Client, built_report: Report
) -> None:
    csv_response = owner_client.get(reverse("reports:download_csv", args=[built_report.pk]))
    chart_response = owner_client.get(reverse("reports:download_chart", args=[built_report.pk]))

    assert csv_response["Content-Disposition"] == 'attachment; filename="sales-2024-03m.csv"'
    assert csv_response["Content-Type"] == "text/csv"
    assert b"".join(csv_response.streaming_content).startswith(
        b"month,region,product,units,revenue"
    )
    assert chart_response["Content-Disposition"] == 'attachment; filename="sales-2024-03m.svg"'
    for response in (csv_response, chart_response):
        assert set(response["Cache-Control"].split(", ")) == {"private", "no-store"}, (
            "no cache may keep them"
        )


def test_the_chart_is_shown_inline_and_may_run_nothing(
    owner_client: Client, built_report: Report
) -> None:
    response = owner_client.get(reverse("reports:chart", args=[built_report.pk]))
    assert response["Content-Type"] == "image/svg+xml"
    assert response["Content-Disposition"].startswith("inline")
    assert "default-src 'none'" in response["Content-Security-Policy"]


def test_files_of_an_unfinished_report_are_not_found(
    owner_client: Client, make_report: Callable[..., Report]
) -> None:
    report = make_report(status=Report.Status.RUNNING)
    assert owner_client.get(reverse("reports:download_csv", args=[report.pk])).status_code == 404


def test_cancelling_a_waiting_report_cancels_it_and_its_task_at_once(
    owner_client: Client, enqueued_report: Report
) -> None:
    response = owner_client.post(reverse("reports:cancel", args=[enqueued_report.pk]), follow=True)

    enqueued_report.refresh_from_db()
    assert enqueued_report.status == Report.Status.CANCELLED
    assert (
        Task.objects.get(pk=enqueued_report.task_id).status == Status.CANCELLED
    )  # it will never run
    assert messages_of(response) == ["Report cancelled."]


def test_cancelling_a_running_report_asks_its_task_to_stop(
    owner_client: Client, enqueued_report: Report
) -> None:
    Task.objects.filter(pk=enqueued_report.task_id).update(
        status=Status.RUNNING
    )  # as if a worker claimed it
    enqueued_report.start()

    response = owner_client.post(reverse("reports:cancel", args=[enqueued_report.pk]), follow=True)

    enqueued_report.refresh_from_db()
    assert (
        enqueued_report.status == Report.Status.RUNNING
        and enqueued_report.status_label == "Cancelling…"
    )
    assert Task.objects.get(pk=enqueued_report.task_id).cancel_requested  # its worker passes it on
    assert messages_of(response) == ["Cancelling: the build stops after its current step."]
    assert "Cancel report" not in response.text


def test_a_finished_report_cannot_be_cancelled(
    owner_client: Client, built_report: Report, media_root
) -> None:
    response = owner_client.post(reverse("reports:cancel", args=[built_report.pk]), follow=True)

    built_report.refresh_from_db()
    assert built_report.status == Report.Status.SUCCEEDED and len(media_files(media_root)) == 2
    assert messages_of(response) == ["This report has already finished (succeeded)."]


def test_cancel_accepts_post_only(owner_client: Client, enqueued_report: Report) -> None:
    assert owner_client.get(reverse("reports:cancel", args=[enqueued_report.pk])).status_code == 405


def test_a_report_whose_task_an_operator_cancelled_is_shown_as_cancelled(
    owner_client: Client, enqueued_report: Report, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        cancel([int(enqueued_report.task_id)])  # from the queue's admin, not the report's page

    response = owner_client.get(enqueued_report.get_absolute_url())

    assert response.context["report"].status == Report.Status.CANCELLED


def test_deleting_a_report_deletes_its_files(
    built_report: Report, media_root, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        built_report.delete()
    assert media_files(media_root) == []


def test_operators_see_reports_in_the_admin_with_a_link_to_their_task(
    admin_client: Client, built_report: Report
) -> None:
    Report.objects.filter(pk=built_report.pk).update(task_id="7")
    changelist = admin_client.get(reverse("admin:reports_report_changelist"))
    change = admin_client.get(reverse("admin:reports_report_change", args=[built_report.pk]))

    assert changelist.status_code == 200 and "Sales 2024, January to March" in changelist.text
    assert reverse("admin:taskqueue_task_change", args=["7"]) in change.text
    assert admin_client.get(reverse("admin:reports_report_add")).status_code == 403


def test_the_limit_does_not_count_reports_whose_tasks_have_ended(
    owner_client: Client, make_report: Callable[..., Report], django_capture_on_commit_callbacks
) -> None:
    reports = [make_report() for _ in range(MAX_ACTIVE_REPORTS)]
    with django_capture_on_commit_callbacks(execute=True):
        for report in reports:
            request_build(report)
    with django_capture_on_commit_callbacks(execute=True):
        cancel(
            [int(report.task_id) for report in Report.objects.all()]
        )  # an operator, from the queue's admin

    response = owner_client.post(reverse("reports:create"), {"year": 2024, "months": 12})

    assert response.status_code == 302
    assert Report.objects.filter(status__in=Report.ACTIVE).count() == 1


def test_a_report_that_cannot_be_queued_fails_instead_of_waiting_forever(
    make_report: Callable[..., Report],
    django_capture_on_commit_callbacks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def queue_down(*args: object) -> None:
        raise DatabaseError("the queue's database is down")

    monkeypatch.setattr("apps.reports.tasks.build_report", SimpleNamespace(enqueue=queue_down))
    report = make_report()
    with django_capture_on_commit_callbacks(
        execute=True
    ):  # robust: logged, and the response goes out
        request_build(report)

    report.refresh_from_db()
    assert report.status == Report.Status.FAILED and report.error == NOT_QUEUED
