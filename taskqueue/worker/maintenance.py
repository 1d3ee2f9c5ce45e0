"""A worker process's maintenance: the duties that keep the queue healthy besides running tasks, as
named steps run every HEARTBEAT_INTERVAL by the process's group (as Solid Queue's supervisor runs
its maintenance). Each step fails alone: one whose query errs is logged and retried at the next
pass, and the steps after it still run.

- `recover`: remove worker processes proved or presumed dead, and put their tasks back (or fail
  them);
- `release_orphans`: put back tasks claimed under this process that none of its threads holds (a
  claim whose reply the connection lost);
- `settle_concurrency`: promote blocked tasks whose concurrency slot has freed (a slot held past its
  duration);
- `pass_on_cancellations`: tell this process's running tasks that were cancelled (stop_requested());
- `prune`: delete what RESULT_RETENTION lets go of, and unused concurrency-key rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from django.db import DatabaseError, connections
from django.utils import timezone

from taskqueue.engine import concurrency, liveness

if TYPE_CHECKING:
    from taskqueue.worker.threads import WorkerGroup

logger = logging.getLogger("taskqueue.worker")

# A task claimed under this process but held by none of its threads for this long was claimed by a
# statement whose reply the connection lost: it is put back.
ORPHAN_AFTER = timedelta(seconds=30)
PRUNE_INTERVAL = 10.0


@dataclass
class Maintenance:
    group: WorkerGroup
    recovery: liveness.Recovery
    next_prune: float = 0.0
    steps: list[tuple[str, Callable[[], None]]] = field(init=False)

    def __post_init__(self) -> None:
        self.steps = [
            ("recover", self.recover),
            ("release_orphans", self.release_orphans),
            ("settle_concurrency", self.settle_concurrency),
            ("pass_on_cancellations", self.pass_on_cancellations),
            ("prune", self.prune),
        ]

    def run_once(self) -> bool:
        """One pass of every step; False if one of them failed (the caller backs off)."""
        ok = True
        for name, step in self.steps:
            try:
                step()
            except Exception as error:
                ok = False
                if isinstance(error, DatabaseError):
                    logger.warning(
                        "maintenance step %s: database error (retrying): %s", name, error
                    )
                    connections[self.group.using].close()
                else:
                    logger.error(
                        "maintenance step %s: unexpected error (retrying): %r",
                        name,
                        error,
                        exc_info=True,
                    )
        return ok

    def recover(self) -> None:
        self.recovery.recover()

    def release_orphans(self) -> None:
        held = set().union(*(worker.held() for worker in self.group.workers))
        self.recovery.release_orphans(held, older_than=ORPHAN_AFTER, now=time.monotonic())

    def settle_concurrency(self) -> None:
        concurrency.sweep(self.group.using, timezone.now())

    def pass_on_cancellations(self) -> None:
        cancelled = self.recovery.cancel_requests()
        for worker in self.group.workers:
            running = worker.running
            if running is not None and running[0] in cancelled:
                running[1].cancelled.set()

    def prune(self) -> None:
        if time.monotonic() < self.next_prune:
            return
        pruned = liveness.prune_finished(self.group.using, self.group.engine.RESULT_RETENTION)
        concurrency.prune_keys(self.group.using)
        # Behind (a full budget's worth): prune again at the next pass.
        self.next_prune = time.monotonic() + (
            0 if pruned >= liveness.PRUNE_BATCH else PRUNE_INTERVAL
        )
