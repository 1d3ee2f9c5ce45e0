"""`python manage.py taskqueue_health`: exit 0 when the queue is served, 1 with a one-line
reason if not.

Made for container health checks and monitoring. Healthy means:

- some worker process has a heartbeat fresher than --max-age;
- every process with a fresh heartbeat has all the worker threads it started alive, and its
  scheduler of recurring tasks too if it runs one (as its last heartbeat recorded them): a process
  whose thread died keeps beating, so a fresh heartbeat alone would say healthy while tasks wait;
- with --max-latency, no queue's oldest due task has waited longer than the limit. Paused queues are
  not held against it.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone

from taskqueue.control import QueueInfo, queue_names
from taskqueue.models import WorkerProcess


class Command(BaseCommand):
    help = (
        "Check that workers are alive, with all their worker threads and schedulers, and that "
        "queues are keeping up; exit 1 with the reason if not."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-age", type=float, default=60.0, help="Freshest heartbeat must be newer (s)."
        )
        parser.add_argument(
            "--max-latency", type=float, help="Oldest due task of a queue may wait this long (s)."
        )
        parser.add_argument(
            "--queue", action="append", dest="queues", help="Queues to check (default: all)."
        )

    def handle(
        self,
        *args: Any,
        max_age: float,
        max_latency: float | None,
        queues: list[str] | None,
        **options: Any,
    ) -> None:
        if max_age <= 0 or (max_latency is not None and max_latency < 0):
            raise CommandError("--max-age must be positive and --max-latency zero or more.")
        try:
            problem, summary = self.check_health(timedelta(seconds=max_age), max_latency, queues)
        except DatabaseError as error:
            problem, summary = f"database unreachable: {error}".splitlines()[0], ""
        if problem:
            self.stderr.write(f"unhealthy: {problem}")
            sys.exit(1)
        self.stdout.write(f"healthy: {summary}")

    def check_health(
        self, max_age: timedelta, max_latency: float | None, queues: list[str] | None
    ) -> tuple[str, str]:
        now = timezone.now()
        fresh = list(WorkerProcess.objects.filter(heartbeat_at__gte=now - max_age).order_by("pk"))
        if not fresh:
            return f"no worker heartbeat in the last {max_age.total_seconds():g}s", ""
        for process in fresh:
            if problem := self.dead_threads(process):
                return problem, ""
        worst = ("", timedelta(0))
        for name in queues or queue_names():
            info = QueueInfo(name)
            if info.paused:
                continue
            latency = info.latency
            if latency > worst[1]:
                worst = (name, latency)
            if max_latency is not None and latency.total_seconds() > max_latency:
                return (
                    f"queue {name!r} latency {latency.total_seconds():.0f}s "
                    f"is over {max_latency:g}s",
                    "",
                )
        oldest = (
            f", oldest due task waiting {worst[1].total_seconds():.1f}s in {worst[0]!r}"
            if worst[0]
            else ""
        )
        return "", f"{len(fresh)} worker process(es) alive{oldest}"

    def dead_threads(self, process: WorkerProcess) -> str:
        """What of `process` was dead at its last heartbeat, or "" if nothing."""
        if process.threads_alive < process.threads:
            return (
                f"worker process {process} has {process.threads_alive} of {process.threads} "
                "worker threads alive"
            )
        if process.scheduler_alive is False:
            return f"worker process {process} has a dead scheduler"
        return ""
