"""`python manage.py taskqueue_worker`: run worker threads (and processes) until SIGTERM or SIGINT.

With no flags the worker groups come from TASKQUEUE["WORKERS"]. SIGTERM/SIGINT stop claiming, let
running tasks finish (they see `stop_requested()`) for up to SHUTDOWN_TIMEOUT, put back what is left
without counting the attempt, and exit 0. A second signal exits at once (status 1). A process whose
worker thread died exits 1 with the reason, for its supervisor (systemd, supervisord, a container
runtime, or `--processes`) to restart it.

`--processes N` runs N such processes as children of this one, restarts any that dies, and passes
signals on, so that one signal is one graceful shutdown of every child and a second the immediate one:

- Each child has a process group of its own. A signal sent to the whole group of this command
  (supervisord's `stopasgroup`, a terminal's Ctrl-C) then reaches the parent only, and each child
  hears it once, from the parent, rather than twice (directly and passed on), which it would take for
  the immediate second signal.
- The parent's handler only notes a signal; its loop passes each one on to every child exactly once,
  including a child it was starting just then. Children start with SIGTERM/SIGINT held back
  (blocked), and let them through once their own handlers are in place: a signal that came while a
  child was still starting is a graceful shutdown too, not the default action that kills it.
- Having left the group, children would outlive a parent killed outright (SIGKILL, supervisord's
  `killasgroup`): a child whose parent is gone exits at once, as the group's SIGKILL would have made it.
- While shutting down the parent restarts nothing, and exits 0 when every child exited 0, 1 otherwise.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from taskqueue.conf import WorkerGroupConfig, load_settings
from taskqueue.engine import registry
from taskqueue.exceptions import TaskModuleError
from taskqueue.models import WorkerProcess
from taskqueue.worker.threads import Worker, WorkerGroup

logger = logging.getLogger("taskqueue.worker")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Set in the environment of each child of `--processes`: its parent's pid, to notice being orphaned.
SUPERVISOR_PID = "TASKQUEUE_SUPERVISOR_PID"
POLL_SECONDS = 0.2  # how often the parent looks at its children, and a child at its parent
RESTART_DELAY = 1.0  # a child that dies at once (bad settings, database down) is not restarted in a tight loop


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
        role.add_argument(
            "--burst", action="store_true", help="Run what is due, then exit 0 (no recurring tasks are enqueued)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["log_level"]:
            logging.getLogger("taskqueue").setLevel(options["log_level"])
        for flag in ("threads", "processes", "batch_size"):
            if options[flag] is not None and options[flag] < 1:
                raise CommandError(f"--{flag.replace('_', '-')} must be 1 or more.")
        longest = WorkerProcess._meta.get_field("name").max_length or 0
        if options["name"] is not None and not 0 < len(options["name"]) <= longest:
            raise CommandError(f"--name must be 1 to {longest} characters, got {len(options['name'])}.")
        interval = options["interval"]
        if interval is not None and not 0 < interval <= threading.TIMEOUT_MAX:
            raise CommandError(f"--interval must be a positive number of seconds (at most {threading.TIMEOUT_MAX:g}).")
        try:
            engine = load_settings({"BATCH_SIZE": options["batch_size"]} if options["batch_size"] else None)
        except ValueError as error:
            raise CommandError(str(error)) from error
        if options["processes"] > 1 and options["burst"]:
            raise CommandError("--burst runs in one process: give --threads for more at once, not --processes.")
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
            group = WorkerGroup(workers, name=name, settings=engine, process_exits=True, burst=options["burst"],
                                schedule=not (options["only_work"] or options["burst"]))  # fmt: skip
        except ValueError as error:
            raise CommandError(str(error)) from error
        run_until_signalled(group, supervisor_pid=supervisor_pid())

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


def run_until_signalled(group: WorkerGroup, supervisor_pid: int | None = None) -> None:
    """Run `group` until it ends: after a first SIGTERM/SIGINT, gracefully; at a second, at once.

    Exits 1 if the group ended because one of its threads died (`group.failure`), so that the
    supervisor restarts the process; `supervisor_pid`: the parent of `--processes`, whose death ends
    this process at once."""
    handle_stop_signals(group)
    group.start()
    while group.is_alive():
        group.join(timeout=POLL_SECONDS)
        if supervisor_pid is not None and os.getppid() != supervisor_pid:
            logger.error("the supervisor (pid %s) is gone: exiting at once", supervisor_pid)
            os._exit(1)
    failure = getattr(group, "failure", None)
    if failure:
        logger.critical("worker process exits with status 1: %s", failure)
        sys.exit(1)


def handle_stop_signals(group: WorkerGroup) -> None:
    """Install the handlers of SIGTERM/SIGINT, then let through any a supervisor held back meanwhile."""
    signals_seen = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            logger.warning("second signal: exiting at once")
            os._exit(1)
        logger.info("%s received: finishing running tasks", signal.Signals(signum).name)
        group.request_stop()

    for signum in STOP_SIGNALS:
        signal.signal(signum, on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def supervisor_pid() -> int | None:
    """The pid of this process's parent if that is a `--processes` supervisor, else None."""
    pid = os.environ.get(SUPERVISOR_PID)
    return int(pid) if pid else None


def child_command() -> list[str]:
    """This command as it was run, less `--processes`: what each child of the supervisor runs."""
    args = [sys.executable, *sys.argv]
    if "--processes" in args:
        at = args.index("--processes")
        del args[at : at + 2]
    return [arg for arg in args if not arg.startswith("--processes=")]


def exit_status(return_codes: list[int | None]) -> int:
    """The supervisor's exit status: 0 only when every child exited 0 (not killed by a signal, < 0)."""
    return 0 if all(code == 0 for code in return_codes) else 1


class Supervisor:
    """The parent of `--processes N`: runs `count` children, restarts any that dies, passes signals on.

    Each child gets every signal this process receives once (at most two: the second is the immediate
    one), from this process only (see the module docstring)."""

    def __init__(self, command: list[str], count: int) -> None:
        self.command = command
        self.count = count
        self.signals: list[int] = []  # received, in order; appended to by the handler only
        self.children: list[subprocess.Popen[bytes]] = []
        self.passed_on: dict[subprocess.Popen[bytes], int] = {}  # child -> how many of `signals` it was sent
        self.restart_at: dict[int, float] = {}  # slot -> when its exited child is started again

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.on_signal)
        self.children = [self.start_child() for _ in range(self.count)]
        while not self.signals:
            self.restart_exited()
            time.sleep(POLL_SECONDS)
        return self.shut_down()

    def on_signal(self, signum: int, frame: object) -> None:
        """Only note the signal: the main loop passes it on. A handler that signalled children itself
        would miss a child being started while it ran."""
        self.signals.append(signum)

    def shut_down(self) -> int:
        logger.info("%s received: stopping %d worker processes", signal.Signals(self.signals[0]).name, self.count)
        while True:
            self.pass_on_signals()
            if all(child.poll() is not None for child in self.children):
                return exit_status([child.returncode for child in self.children])
            time.sleep(POLL_SECONDS)

    def pass_on_signals(self) -> None:
        """Send each child the signals it has not been sent yet (as they are now: the handler may add one meanwhile)."""
        for child in self.children:
            sent = self.passed_on.get(child, 0)
            due = self.signals[sent:2]
            for signum in due:
                child.send_signal(signum)  # not to one that has exited: Popen checks
            self.passed_on[child] = sent + len(due)

    def restart_exited(self) -> None:
        """Start a child again in the slot of one that exited, RESTART_DELAY after noticing it."""
        now = time.monotonic()
        for slot, child in enumerate(self.children):
            if child.poll() is None:
                continue
            if slot not in self.restart_at:
                logger.error("worker process %s exited with %s; restarting it", child.pid, child.returncode)
                self.restart_at[slot] = now + RESTART_DELAY
            elif now >= self.restart_at[slot] and not self.signals:
                del self.restart_at[slot]
                self.children[slot] = self.start_child()

    def start_child(self) -> subprocess.Popen[bytes]:
        """Start a child in a process group of its own, with SIGTERM/SIGINT held back until it has its
        handlers: the signal mask is inherited, and a signal that comes meanwhile waits for them."""
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return subprocess.Popen(self.command, process_group=0, env=os.environ | {SUPERVISOR_PID: str(os.getpid())})
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
