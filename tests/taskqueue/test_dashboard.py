"""The queue dashboard: its numbers against tasks made here, who may see it, its fragment and its
retry buttons."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from taskqueue.dashboard import Dashboard, QueueSnapshot, duration, snapshot
from taskqueue.engine import liveness
from taskqueue.models import PausedQueue, Status, Task, WorkerProcess
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.django_db
DASHBOARD = reverse("admin:taskqueue_dashboard")


def make(queue: str, status: str, count: int = 1, **fields: object) -> list[Task]:
    """Tasks as the engine leaves them, written directly: the dashboard only reads the table."""
    now = timezone.now()
    defaults = {"kind": "queue", "task_path": "tests.Sample", "queue_name": queue, "status": status}
    defaults |= {"enqueued_at": now - timedelta(hours=1), "run_at": now - timedelta(minutes=1)}
    return Task.objects.bulk_create([Task(**(defaults | fields)) for _ in range(count)])


def queue(board: Dashboard, name: str) -> QueueSnapshot:
    return next(snapshot for snapshot in board.queues if snapshot.name == name)


def staff(client: Client, *codenames: str) -> Client:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def failed_task(drain) -> Task:
    info = q.FailingQueue.add_task("smtp said no")
    drain("failing")
    return Task.objects.get(pk=info.id)


def test_counts_per_queue_and_state_follow_the_admins_groups() -> None:
    now = timezone.now()
    make("email", Status.READY, 2)
    make("email", Status.READY, abandoned=True)  # put back after its worker died
    make("email", Status.READY, run_at=now + timedelta(hours=1))
    make("email", Status.BLOCKED, concurrency_key="account:1")
    make("email", Status.RUNNING)
    make("email", Status.SUCCEEDED, 3, finished_at=now - timedelta(hours=2))
    make(
        "email", Status.SUCCEEDED, finished_at=now - timedelta(days=2)
    )  # older than the admin's 24 hours
    make("email", Status.FAILED, 2, finished_at=now - timedelta(hours=3))
    make("email", Status.FAILED, abandoned=True, finished_at=now - timedelta(hours=3))
    make("email", Status.CANCELLED, finished_at=now)
    make("reports", Status.READY)
    PausedQueue.objects.create(name="idle", paused_at=now)
    PausedQueue.objects.create(name="reports", paused_at=now)

    board = snapshot(timezone.now())

    assert [snapshot.name for snapshot in board.queues] == ["email", "idle", "reports"]
    assert queue(board, "email").counts == {
        "failed": 3,
        "abandoned": 2,
        "running": 1,
        "ready": 3,
        "scheduled": 1,
        "blocked": 1,
        "succeeded": 3,
        "cancelled": 1,
    }
    assert [state.label for state in queue(board, "email").states][:3] == [
        "Failed",
        "Abandoned (worker died)",
        "Running",
    ]
    assert sum(queue(board, "idle").counts.values()) == 0
    assert queue(board, "reports").counts["ready"] == 1
    assert [snapshot.paused for snapshot in board.queues] == [False, True, True]


def test_latency_is_the_age_of_the_oldest_ready_task() -> None:
    now = timezone.now()
    make("email", Status.READY, run_at=now - timedelta(seconds=90))
    make("email", Status.READY, run_at=now - timedelta(seconds=10))
    make("email", Status.RUNNING, run_at=now - timedelta(hours=1))  # running: no longer waiting
    make("later", Status.READY, run_at=now + timedelta(minutes=5))  # scheduled: not due yet

    board = snapshot(timezone.now())

    assert timedelta(seconds=89) <= queue(board, "email").latency < timedelta(seconds=100)
    assert (
        queue(board, "email").latency_text.endswith(" s")
        and "1 min" in queue(board, "email").latency_text
    )
    assert queue(board, "later").latency == timedelta(0)


def test_throughput_and_failures_land_in_the_minute_they_finished() -> None:
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    make("email", Status.SUCCEEDED, 2, finished_at=minute - timedelta(minutes=3, seconds=-1))
    make("reports", Status.SUCCEEDED, finished_at=minute - timedelta(minutes=3, seconds=-59))
    make("email", Status.SUCCEEDED, finished_at=minute)
    make("email", Status.FAILED, finished_at=minute - timedelta(minutes=10, seconds=-30))
    make("email", Status.SUCCEEDED, finished_at=minute - timedelta(minutes=61))  # before the window
    make("email", Status.FAILED, finished_at=minute - timedelta(hours=2))
    make("email", Status.CANCELLED, finished_at=minute)  # neither a success nor a failure

    board = snapshot(now)

    assert len(board.succeeded.counts) == 60 and board.succeeded.start == minute - timedelta(
        minutes=59
    )
    assert board.succeeded.counts[56] == 3 and board.succeeded.counts[59] == 1
    assert board.succeeded.total == 4 and board.succeeded.peak == 3
    assert board.failed.counts[49] == 1 and board.failed.total == 1
    assert (
        queue(board, "email").succeeded.counts[56] == 2
        and queue(board, "reports").succeeded.counts[56] == 1
    )
    assert queue(board, "reports").failed.total == 0
    local = timezone.localtime(minute - timedelta(minutes=3))
    assert (
        board.succeeded.summary
        == f"4 succeeded in the last 60 minutes; at most 3 in one minute, at {local:%H:%M}."
    )
    assert [(m.at, m.succeeded, m.failed) for m in board.minutes] == [
        (minute - timedelta(minutes=10), 0, 1),
        (minute - timedelta(minutes=3), 3, 0),
        (minute, 1, 0),
    ]


def test_chart_bars_scale_to_the_busiest_minute_and_a_single_task_stays_visible() -> None:
    minute = timezone.now().replace(second=0, microsecond=0)
    make("email", Status.SUCCEEDED, 50, finished_at=minute - timedelta(minutes=1))
    make("email", Status.SUCCEEDED, finished_at=minute)

    bars = snapshot(timezone.now()).succeeded.bars

    assert [bar.count for bar in bars] == [50, 1]
    busiest, single = bars
    assert (busiest.y, busiest.height) == (0, 100)
    assert 0 < single.height < 5 and single.y + single.height == 100
    assert single.x > busiest.x


def test_workers_alive_late_and_presumed_dead_by_their_heartbeat() -> None:
    now = timezone.now()
    for name, silence in (("fresh", 1), ("late", 10), ("gone", 600)):
        process = liveness.register("default", name, ["email*"], 2)
        WorkerProcess.objects.filter(pk=process.pk).update(
            heartbeat_at=now - timedelta(seconds=silence)
        )

    board = snapshot(now)

    health = {worker.process.name: worker.health for worker in board.workers}
    assert health == {"fresh": "alive", "late": "late", "gone": "presumed dead"}
    assert board.workers_alive == 1
    fresh = next(worker for worker in board.workers if worker.process.name == "fresh")
    assert fresh.heartbeat_age_text == "1 s" and fresh.process.queues == ["email*"]


def test_latest_failures_newest_first_with_their_last_error(failed_task: Task) -> None:
    older = make("email", Status.FAILED, 12, finished_at=timezone.now() - timedelta(hours=1))

    failures = snapshot(timezone.now()).failures

    assert len(failures) == 10
    assert failures[0].task == failed_task
    assert failures[0].error == "ValueError: smtp said no"
    assert {failure.task.pk for failure in failures[1:]} <= {task.pk for task in older}


def test_duration_reads_at_a_glance() -> None:
    seconds = [0, 59, 61, 3600, 3661, 90061]
    assert [duration(timedelta(seconds=s)) for s in seconds] == [
        "0 s",
        "59 s",
        "1 min 1 s",
        "1 h",
        "1 h 1 min",
        "1 d 1 h",
    ]


def test_the_snapshot_costs_a_fixed_number_of_queries(django_assert_max_num_queries) -> None:
    now = timezone.now()
    for name in ("a", "b", "c"):
        make(name, Status.READY, 20)
        make(name, Status.SUCCEEDED, 20, finished_at=now - timedelta(minutes=5))
        make(name, Status.FAILED, 20, finished_at=now - timedelta(minutes=5))
    # 8 state groups, paused queues, minute buckets, workers, failures, and the latency of 3 queues.
    with django_assert_max_num_queries(15):
        snapshot(now)


def test_anonymous_visitors_are_sent_to_the_login_page(client: Client) -> None:
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_users_who_are_not_staff_are_refused(client: Client) -> None:
    client.force_login(User.objects.create_user("visitor", password="pw"))
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))
    assert client.get(DASHBOARD + "?fragment=1").status_code == 302


def test_staff_without_permission_to_view_tasks_are_refused(client: Client) -> None:
    assert staff(client).get(DASHBOARD).status_code == 403


def test_staff_see_the_dashboard(admin_client: Client, failed_task: Task) -> None:
    liveness.register("default", "mail-box", ["email*"], 4)
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    page = response.text
    assert "<h1>Queue dashboard</h1>" in page
    assert "taskqueue/dashboard.js" in page and "taskqueue/dashboard.css" in page
    assert 'id="tq-updated" class="tq-updated" aria-live="off"' in page and "Updated at" in page
    assert f'<a href="{DASHBOARD}" id="tq-reload">Refresh</a>' in page, (
        "without JavaScript, a link refreshes"
    )
    assert "mail-box" in page and "email*" in page
    assert "ValueError: smtp said no" in page
    assert reverse("admin:taskqueue_task_change", args=[failed_task.pk]) in page
    assert "?state=failed&amp;queue_name=failing" in page, "a count links to its tasks in the admin"


def test_charts_are_labelled_images_with_their_numbers_in_text(admin_client: Client) -> None:
    make("email", Status.SUCCEEDED, 2, finished_at=timezone.now())
    page = admin_client.get(DASHBOARD).text
    assert 'role="img" aria-labelledby="tq-all-succeeded"' in page
    assert (
        '<title id="tq-all-succeeded">All queues, succeeded per minute: 2 succeeded in the last '
        "60 minutes" in page
    )
    assert (
        '<title id="tq-queue-1-failed">Queue email, failed per minute: 0 failed in the last 60 '
        "minutes." in page
    )
    assert ">The numbers per minute</summary>" in page
    assert "<script>" not in page, "no inline script: the page works under a strict CSP"


def test_the_fragment_is_the_refreshable_body_only(admin_client: Client, failed_task: Task) -> None:
    response = admin_client.get(DASHBOARD, {"fragment": "1"})
    assert response.status_code == 200
    assert "no-cache" in response.headers["Cache-Control"]
    body = response.text
    assert (
        body.lstrip().startswith('<div class="tq-body"')
        and "<html" not in body
        and "breadcrumbs" not in body
    )
    assert (
        'data-updated-at="' in body
        and "Latest failures" in body
        and "ValueError: smtp said no" in body
    )


def test_without_results_kept_the_dashboard_says_throughput_is_not_counted(
    admin_client: Client, settings
) -> None:
    settings.TASKQUEUE = {"RESULT_RETENTION": 0}
    assert "throughput is not counted" in admin_client.get(DASHBOARD).text


def test_the_task_list_links_to_the_dashboard(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:taskqueue_task_changelist")).text
    assert f'<a href="{DASHBOARD}" class="viewsitelink">Queue dashboard</a>' in page


def test_the_retry_button_retries_and_comes_back_with_the_message(
    client: Client, failed_task: Task
) -> None:
    operator = staff(client, "view_task", "retry_task")
    button = f'aria-label="Retry task {failed_task.pk}">Retry</button>'
    assert button in operator.get(DASHBOARD).text

    url = reverse("admin:taskqueue_task_retry", args=[failed_task.pk])
    response = operator.post(url, {"return_to": "dashboard"}, follow=True)

    assert response.redirect_chain == [(DASHBOARD, 302)]
    assert [str(message) for message in response.context["messages"]] == ["1 task(s) retried."]
    failed_task.refresh_from_db()
    assert (failed_task.status, failed_task.attempts) == (Status.READY, 0)
    assert button not in response.text, "a retried task is no longer among the failures"


def test_without_the_retry_permission_there_is_no_button_and_no_retry(
    client: Client, failed_task: Task
) -> None:
    viewer = staff(client, "view_task")
    page = viewer.get(DASHBOARD).text
    assert "ValueError: smtp said no" in page and "Retry task" not in page
    url = reverse("admin:taskqueue_task_retry", args=[failed_task.pk])
    assert viewer.post(url, {"return_to": "dashboard"}).status_code == 403
    failed_task.refresh_from_db()
    assert failed_task.status == Status.FAILED


def test_the_retry_button_needs_a_csrf_token(failed_task: Task) -> None:
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(User.objects.create_superuser("root", password="pw"))
    page = csrf_client.get(DASHBOARD).text
    assert 'name="csrfmiddlewaretoken"' in page
    url = reverse("admin:taskqueue_task_retry", args=[failed_task.pk])
    assert csrf_client.post(url, {"return_to": "dashboard"}).status_code == 403
    failed_task.refresh_from_db()
    assert failed_task.status == Status.FAILED


def test_an_empty_queue_table_shows_an_empty_dashboard(admin_client: Client) -> None:
    page = admin_client.get(DASHBOARD).text
    assert (
        "No queue has tasks yet." in page
        and "No worker process is running" in page
        and "No failed tasks." in page
    )
