"""The supervisor of `taskqueue_worker --processes N`: runs N worker processes as its children,
restarts any that dies, and passes signals on, so that one signal is one graceful shutdown of every
child and a second the immediate one:

- Each child has a process group of its own. A signal sent to the whole group of this command
  (supervisord's `stopasgroup`, a terminal's Ctrl-C) then reaches the parent only, and each child
  hears it once, from the parent, rather than twice (directly and passed on), which it would take
  for the immediate second signal.
- The parent's handler only notes a signal; its loop passes each one on to every child exactly once,
  including a child it was starting just then. Children start with SIGTERM/SIGINT held back
  (blocked), and let them through once their own handlers are in place: a signal that came while a
  child was still starting is a graceful shutdown too, not the default action that kills it.
- Having left the group, children would outlive a parent killed outright (SIGKILL, supervisord's
  `killasgroup`): a child whose parent is gone exits at once, as the group's SIGKILL would have made
  it.
- While shutting down the parent restarts nothing, and exits 0 when every child exited 0, 1
  otherwise.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from taskqueue.worker.process import POLL_SECONDS, STOP_SIGNALS

logger = logging.getLogger("taskqueue.worker")

# Set in the environment of each child of `--processes`: its parent's pid, to notice being orphaned.
SUPERVISOR_PID = "TASKQUEUE_SUPERVISOR_PID"
RESTART_DELAY = (
    1.0  # a child that dies at once (bad settings, database down) is not restarted in a tight loop
)


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
    """The supervisor's exit status: 0 only when every child exited 0 (not killed by a signal,
    < 0)."""
    return 0 if all(code == 0 for code in return_codes) else 1


class Supervisor:
    """The parent of `--processes N`: runs `count` children, restarts any that dies, passes
    signals on.

    Each child gets every signal this process receives once (at most two: the second is the
    immediate one), from this process only (see the module docstring)."""

    def __init__(self, command: list[str], count: int) -> None:
        self.command = command
        self.count = count
        self.signals: list[int] = []  # received, in order; appended to by the handler only
        self.children: list[subprocess.Popen[bytes]] = []
        self.passed_on: dict[
            subprocess.Popen[bytes], int
        ] = {}  # child -> how many of `signals` it was sent
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
        """Only note the signal: the main loop passes it on. A handler that signalled children
        itself would miss a child being started while it ran."""
        self.signals.append(signum)

    def shut_down(self) -> int:
        logger.info(
            "%s received: stopping %d worker processes",
            signal.Signals(self.signals[0]).name,
            self.count,
        )
        while True:
            self.pass_on_signals()
            if all(child.poll() is not None for child in self.children):
                return exit_status([child.returncode for child in self.children])
            time.sleep(POLL_SECONDS)

    def pass_on_signals(self) -> None:
        """Send each child the signals it has not been sent yet (as they are now: the handler may
        add one meanwhile)."""
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
                logger.error(
                    "worker process %s exited with %s; restarting it", child.pid, child.returncode
                )
                self.restart_at[slot] = now + RESTART_DELAY
            elif now >= self.restart_at[slot] and not self.signals:
                del self.restart_at[slot]
                self.children[slot] = self.start_child()

    def start_child(self) -> subprocess.Popen[bytes]:
        """Start a child in a process group of its own, with SIGTERM/SIGINT held back until it has
        its handlers: the signal mask is inherited, and a signal that comes meanwhile waits for
        them."""
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return subprocess.Popen(
                self.command, process_group=0, env=os.environ | {SUPERVISOR_PID: str(os.getpid())}
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
