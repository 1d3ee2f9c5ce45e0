"""`python manage.py taskqueue_worker`: run worker threads (and processes) until SIGTERM or SIGINT.

With no flags the worker groups come from TASKQUEUE["WORKERS"]. SIGTERM/SIGINT stop claiming, let
running tasks finish (they see `stop_requested()`) for up to SHUTDOWN_TIMEOUT, put back what is left
without counting the attempt, and exit 0. A second signal exits at once (status 1). A process whose
worker thread died exits 1 with the reason, for its supervisor (systemd, supervisord, a container
runtime, or `--processes`) to restart it.

`--processes N` runs N such processes under a supervisor (taskqueue.worker.supervisor).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from taskqueue.conf import WorkerGroupConfig, load_settings
from taskqueue.engine import registry
from taskqueue.exceptions import TaskModuleError
from taskqueue.models import WorkerProcess
from taskqueue.worker.process import run_until_signalled
from taskqueue.worker.supervisor import Supervisor, child_command, supervisor_pid
from taskqueue.worker.threads import Worker, WorkerGroup

logger = logging.getLogger("taskqueue.worker")


class Command(BaseCommand):
    help = "Run task queue workers until SIGTERM/SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-Q",
            "--queues",
            help=(
                "Comma-separated queue selectors in claim order: names, '*', "
                "prefixes like 'email*'."
            ),
        )
        parser.add_argument("--threads", type=int, help="Worker threads per process.")
        parser.add_argument(
            "--processes", type=int, default=1, help="Worker processes to run (default 1)."
        )
        parser.add_argument("--interval", type=float, help="Seconds between polls when idle.")
        parser.add_argument("--batch-size", type=int, help="Most tasks a thread claims at once.")
        parser.add_argument(
            "-l", "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper
        )
        parser.add_argument("-n", "--name", help="Worker name shown in the admin and logs.")
        role = parser.add_mutually_exclusive_group()
        role.add_argument(
            "--only-work", action="store_true", help="Run tasks; leave recurring tasks to others."
        )
        role.add_argument(
            "--only-schedule", action="store_true", help="Enqueue recurring tasks; run none."
        )
        role.add_argument(
            "--burst",
            action="store_true",
            help="Run what is due, then exit 0 (no recurring tasks are enqueued).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["log_level"]:
            logging.getLogger("taskqueue").setLevel(options["log_level"])
        for flag in ("threads", "processes", "batch_size"):
            if options[flag] is not None and options[flag] < 1:
                raise CommandError(f"--{flag.replace('_', '-')} must be 1 or more.")
        longest = WorkerProcess._meta.get_field("name").max_length or 0
        if options["name"] is not None and not 0 < len(options["name"]) <= longest:
            raise CommandError(
                f"--name must be 1 to {longest} characters, got {len(options['name'])}."
            )
        interval = options["interval"]
        if interval is not None and not 0 < interval <= threading.TIMEOUT_MAX:
            raise CommandError(
                "--interval must be a positive number of seconds "
                f"(at most {threading.TIMEOUT_MAX:g})."
            )
        try:
            engine = load_settings(
                {"BATCH_SIZE": options["batch_size"]} if options["batch_size"] else None
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        if options["processes"] > 1 and options["burst"]:
            raise CommandError(
                "--burst runs in one process: give --threads for more at once, not --processes."
            )
        if options["processes"] > 1:
            sys.exit(Supervisor(child_command(), options["processes"]).run())
        try:
            registry.autodiscover()
        except TaskModuleError as error:
            raise CommandError(str(error)) from error
        groups = self.groups(engine.WORKERS, options)
        name = options["name"] or groups[0].name
        workers = [
            Worker(
                thread_name=f"{group.name}-{index + 1}",
                sleep_seconds_when_empty=group.sleep_seconds_when_empty,
                queue_classes=group.queue_classes,
                queues=list(group.queues),
            )
            for group in groups
            for index in range(group.num_threads)
        ]
        if options["only_schedule"]:
            workers = []
        try:
            group = WorkerGroup(
                workers,
                name=name,
                settings=engine,
                process_exits=True,
                burst=options["burst"],
                schedule=not (options["only_work"] or options["burst"]),
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        run_until_signalled(group, supervisor_pid=supervisor_pid())

    def groups(
        self, configured: tuple[WorkerGroupConfig, ...], options: dict[str, Any]
    ) -> list[WorkerGroupConfig]:
        if not (options["queues"] or options["threads"] or options["interval"]):
            return list(configured)
        queues = tuple(q.strip() for q in (options["queues"] or "*").split(",") if q.strip())
        if not queues:
            raise CommandError("--queues selects no queue.")
        return [
            WorkerGroupConfig(
                name=options["name"] or "worker",
                num_threads=options["threads"] or 1,
                sleep_seconds_when_empty=options["interval"] or 1.0,
                queues=queues,
            )
        ]
