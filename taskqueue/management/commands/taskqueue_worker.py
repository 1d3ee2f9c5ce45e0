"""`python manage.py taskqueue_worker`: run worker threads (and processes) until SIGTERM or SIGINT.

With no flags the worker groups come from TASKQUEUE["WORKERS"]. SIGTERM/SIGINT stop claiming, let
running tasks finish (they see `stop_requested()`) for up to SHUTDOWN_TIMEOUT, put back what is left
without counting the attempt, and exit 0. A second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from taskqueue.conf import WorkerGroupConfig, load_settings
from taskqueue.worker.threads import Worker, WorkerGroup

logger = logging.getLogger("taskqueue.worker")


class Command(BaseCommand):
    help = "Run task queue workers until SIGTERM/SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-Q", "--queues", help="Comma-separated queue selectors in claim order: names, '*', prefixes like 'email*'."
        )
        parser.add_argument("--threads", type=int, help="Worker threads per process.")
        parser.add_argument("--processes", type=int, default=1, help="Worker processes to run (default 1).")
        parser.add_argument("--interval", type=float, help="Seconds between polls when idle.")
        parser.add_argument("--batch-size", type=int, help="Most tasks a thread claims at once.")
        parser.add_argument("-l", "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper)
        parser.add_argument("-n", "--name", help="Worker name shown in the admin and logs.")
        role = parser.add_mutually_exclusive_group()
        role.add_argument("--only-work", action="store_true", help="Run tasks; leave recurring tasks to others.")
        role.add_argument("--only-schedule", action="store_true", help="Enqueue recurring tasks; run none.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["log_level"]:
            logging.getLogger("taskqueue").setLevel(options["log_level"])
        for flag in ("threads", "processes", "batch_size"):
            if options[flag] is not None and options[flag] < 1:
                raise CommandError(f"--{flag.replace('_', '-')} must be 1 or more.")
        if options["interval"] is not None and options["interval"] <= 0:
            raise CommandError("--interval must be positive.")
        try:
            engine = load_settings({"BATCH_SIZE": options["batch_size"]} if options["batch_size"] else None)
        except ValueError as error:
            raise CommandError(str(error)) from error
        if options["processes"] > 1:
            sys.exit(supervise(options["processes"]))
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
        run_until_signalled(
            WorkerGroup(workers, name=name, settings=engine, schedule=not options["only_work"], process_exits=True)
        )

    def groups(self, configured: tuple[WorkerGroupConfig, ...], options: dict[str, Any]) -> list[WorkerGroupConfig]:
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


def run_until_signalled(group: WorkerGroup) -> None:
    signals_seen = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            logger.warning("second signal: exiting at once")
            os._exit(1)
        logger.info("%s received: finishing running tasks", signal.Signals(signum).name)
        group.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    group.start()
    while group.is_alive():
        group.join(timeout=0.5)


def supervise(count: int) -> int:
    """Run `count` single-process workers as children; restart any that dies; pass signals on."""
    child_args = [sys.executable, *sys.argv]
    if "--processes" in child_args:
        at = child_args.index("--processes")
        del child_args[at : at + 2]
    child_args = [a for a in child_args if not a.startswith("--processes=")]
    children: list[subprocess.Popen[bytes]] = []
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children.extend(subprocess.Popen(child_args) for _ in range(count))
    while not received:
        for index, child in enumerate(children):
            if child.poll() is not None and not received:
                logger.error("worker process %s exited with %s; restarting it", child.pid, child.returncode)
                time.sleep(1)
                if not received:
                    children[index] = subprocess.Popen(child_args)
        time.sleep(0.2)
    # A child started just as the signal came may have missed it: pass it on again.
    for child in children:
        if child.poll() is None:
            child.send_signal(received[0])
    return max((child.wait() for child in children), default=0)
