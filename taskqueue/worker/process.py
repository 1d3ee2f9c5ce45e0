"""Running one worker process until it is signalled: SIGTERM/SIGINT stop it gracefully, a second one
at once.

SIGTERM/SIGINT stop claiming, let running tasks finish (they see `stop_requested()`) for up to
SHUTDOWN_TIMEOUT, put back what is left without counting the attempt, and exit 0. A second signal
exits at once (status 1). A process whose worker thread died exits 1 with the reason, for its
supervisor (systemd, supervisord, a container runtime, or `--processes`) to restart it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from taskqueue.worker.threads import WorkerGroup

logger = logging.getLogger("taskqueue.worker")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
POLL_SECONDS = 0.2  # how often a supervisor looks at its children, and a child at its parent


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
    """Install the handlers of SIGTERM/SIGINT, then let through any a supervisor held back
    meanwhile."""
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
