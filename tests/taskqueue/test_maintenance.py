"""A worker process's maintenance steps each fail alone: a broken one is logged and the others still
run."""

from __future__ import annotations

import pytest
from django.db import connection

from taskqueue.engine import liveness
from taskqueue.models import Status
from taskqueue.worker.maintenance import Maintenance
from taskqueue.worker.threads import WorkerGroup
from tests.taskqueue.test_liveness import a_worker, dead_pid, running_task

__all__ = ["dead_pid"]  # a fixture

pytestmark = pytest.mark.django_db


def maintenance() -> Maintenance:
    group = WorkerGroup([], name="maintenance-test")
    process = liveness.register(connection.alias, "maintenance-test", ["*"], 0)
    return Maintenance(
        group,
        liveness.Recovery(connection.alias, process.pk, heartbeat_interval=0.1, dead_after=60),
    )


def test_the_steps_have_names_and_run_in_order() -> None:
    assert [name for name, _ in maintenance().steps] == [
        "recover",
        "release_orphans",
        "settle_concurrency",
        "pass_on_cancellations",
        "prune",
    ]


def test_a_failing_step_is_logged_and_the_others_still_run(dead_pid, monkeypatch, caplog) -> None:
    orphan = running_task(a_worker(dead_pid))
    steps = maintenance()

    def broken(*args, **kwargs):
        raise RuntimeError("prune bug")

    monkeypatch.setattr(liveness, "prune_finished", broken)
    monkeypatch.setattr(
        steps.recovery, "cancel_requests", lambda: (_ for _ in ()).throw(ValueError("cancel bug"))
    )
    assert steps.run_once() is False
    orphan.refresh_from_db()
    assert orphan.status == Status.READY, "recovery ran though later steps failed"
    assert "maintenance step prune: unexpected error" in caplog.text and "prune bug" in caplog.text
    assert "maintenance step pass_on_cancellations: unexpected error" in caplog.text
    monkeypatch.undo()
    assert steps.run_once() is True
