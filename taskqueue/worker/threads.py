"""`Worker` (one thread claiming and running tasks) and `WorkerGroup` (the threads of one process).

A WorkerGroup registers the process, beats its heartbeat, recovers tasks of dead workers, listens
for wake-ups, and on stop puts back what its threads did not finish, without counting the attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, connections, router
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from django.utils.module_loading import import_string

from taskqueue.conf import EngineSettings, load_settings
from taskqueue.engine import concurrency, executors, liveness
from taskqueue.engine.claim import ClaimedTask, Claimer
from taskqueue.engine.outcomes import Recorder, put_back
from taskqueue.engine.running import TaskControl, run_task
from taskqueue.models import Status, Task

logger = logging.getLogger("taskqueue.worker")

# Outcomes are written at least this often while a batch runs (and always at its end).
FLUSH_INTERVAL = 0.05
# A batch grows while tasks take less than this each, and drops to one task when they take longer.
QUICK_TASK_SECONDS = 0.005
PRUNE_INTERVAL = 60.0
# A task claimed under this process but held by none of its threads for this long was claimed by a
# statement whose reply the connection lost: it is put back.
ORPHAN_AFTER = timedelta(seconds=30)


def backoff_seconds(failures: int) -> float:
    """Waits between tries while the database is away: 0.25 s, doubling, at most 5 s."""
    return min(0.25 * 2**failures, 5.0)


def queue_names(queue_classes: Iterable[Any]) -> list[str]:
    classes = [import_string(item) if isinstance(item, str) else item for item in queue_classes]
    return [cls.queue_name for cls in classes]


class Worker(threading.Thread):
    """One thread that claims tasks in batches and runs them one at a time."""

    def __init__(
        self,
        thread_name: str = "taskqueue-worker",
        sleep_seconds_when_empty: float = 1.0,
        queue_classes: Sequence[Any] = (),
        queues: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(name=thread_name, daemon=True)
        selectors = list(queues if queues is not None else ([] if queue_classes else ["*"]))
        self.selectors = selectors + queue_names(queue_classes)
        self.sleep_seconds_when_empty = sleep_seconds_when_empty
        self.batch_size = batch_size
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.group: WorkerGroup | None = None
        # Ids of tasks this thread claimed and has not yet recorded an outcome for.
        self._held: set[int] = set()
        self._held_lock = threading.Lock()
        # The task running now, and its control (the heartbeat sets its `cancelled` on a revoke).
        self.running: tuple[int, TaskControl] | None = None

    def held(self) -> set[int]:
        with self._held_lock:
            return set(self._held)

    def request_stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        group = self.group
        if group is not None and group.workers == [self] and not group.stopping.is_set():
            group.request_stop()  # a lone worker's group ends with it

    def stop(self) -> None:
        self.request_stop()
        self.join()

    def run(self) -> None:
        own_group = self.group is None
        if own_group:
            # Started on its own: it is then a group of one, whose process duties run beside it.
            WorkerGroup([self], name=self.name).start()
        try:
            if self.group.registered.wait() and not self.stopping.is_set():
                self._loop(self.group)
        finally:
            if own_group:
                self.group.request_stop()
            connections.close_all()

    def _loop(self, group: WorkerGroup) -> None:
        engine = group.engine
        claimer = Claimer(group.using, group.process_id, self.selectors)
        recorder = Recorder(group.using, group.process_id, group.worker_label, engine.RESULT_RETENTION)
        most = self.batch_size or engine.BATCH_SIZE
        batch = 1
        failures = 0
        while not self.stopping.is_set():
            try:
                tasks = claimer.claim(batch, timezone.now())
                with self._held_lock:
                    self._held.update(task.id for task in tasks)
                failures = 0
            except DatabaseError as error:
                failures = self._database_trouble(error, failures)
                continue
            if not tasks:
                self._flush(recorder)
                if self.wake.wait(self.sleep_seconds_when_empty):
                    self.wake.clear()
                continue
            started = time.monotonic()
            self._run_batch(tasks, recorder)
            self._flush(recorder)
            per_task = (time.monotonic() - started) / len(tasks)
            batch = min(batch * 2, most) if per_task < QUICK_TASK_SECONDS else 1
        self._flush(recorder)

    def _run_batch(self, tasks: list[ClaimedTask], recorder: Recorder) -> None:
        last_flush = time.monotonic()
        for index, task in enumerate(tasks):
            if self.stopping.is_set():
                for unstarted in tasks[index:]:
                    recorder.add(put_back(unstarted))
                return
            control = TaskControl(self.stopping, recorder.worker_name)
            self.running = (task.id, control)
            recorder.add(run_task(task, control))
            self.running = None
            if time.monotonic() - last_flush > FLUSH_INTERVAL:
                self._flush(recorder)
                last_flush = time.monotonic()

    def _flush(self, recorder: Recorder) -> None:
        """Write outcomes; through a database outage, keep them and retry until written."""
        failures = 0
        while recorder.pending:
            written = [outcome.task.id for outcome in recorder.pending]
            try:
                recorder.flush()
                with self._held_lock:
                    self._held.difference_update(written)
            except DatabaseError as error:
                failures = self._database_trouble(error, failures)
                if failures > 1000:
                    logger.error("giving up writing %d outcomes; their tasks will be recovered", len(recorder.pending))
                    recorder.pending.clear()

    def _database_trouble(self, error: DatabaseError, failures: int) -> int:
        logger.warning("database error in %s (retrying): %s", self.name, error)
        connections[self.group.using].close()
        time.sleep(backoff_seconds(failures))
        return failures + 1


class WorkerGroup(threading.Thread):
    """The worker threads of one process, plus the process's heartbeat, recovery and wake-ups."""

    def __init__(
        self,
        workers: Sequence[Worker],
        name: str = "taskqueue",
        settings: EngineSettings | None = None,
        schedule: bool = True,
    ) -> None:
        """`schedule`: also run the scheduler of recurring tasks in this process."""
        super().__init__(name=f"{name}-group", daemon=True)
        self.schedule = schedule
        self.workers = list(workers)
        self.label = name
        self.engine = settings or load_settings()
        self.using = router.db_for_write(Task)
        self.process_id: int = 0
        self.worker_label = name
        self.stopping = threading.Event()
        # Set once the process is registered (or the group gave up): its workers may claim from then on.
        self.registered = threading.Event()
        for worker in self.workers:
            worker.group = self

    def request_stop(self) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.request_stop()

    def stop(self) -> None:
        """Ask every thread to stop and wait; tasks still running after SHUTDOWN_TIMEOUT are put back."""
        self.request_stop()
        self.join()

    def wake_all(self) -> None:
        for worker in self.workers:
            worker.wake.set()

    def run(self) -> None:
        selectors = list(dict.fromkeys(s for worker in self.workers for s in worker.selectors))
        threads = len(self.workers)
        process = self._retry_until_stopped(lambda: liveness.register(self.using, self.label, selectors, threads))
        if process is None:
            self.registered.set()
            return
        self.process_id = process.pk
        self.worker_label = str(process)
        executors.worker_starting()
        alive = liveness.Liveness(self.using, process, self.engine.HEARTBEAT_INTERVAL, self.engine.WORKER_DEAD_AFTER)
        if self.engine.LISTEN_NOTIFY and connections[self.using].vendor == "postgresql":
            from taskqueue.worker.wakeup import Listener

            Listener(self.using, self.wake_all, self.stopping).start()
        logger.info(
            "worker process started id=%s name=%s queues=%s threads=%s",
            self.process_id,
            self.label,
            ",".join(selectors),
            threads,
        )
        self.registered.set()
        for worker in self.workers:
            if not worker.is_alive():  # a worker started on its own is already running
                worker.start()
        if self.schedule:
            from taskqueue.worker.scheduler import Scheduler

            Scheduler(self.engine, self.stopping).start()
        self._keep_alive(alive)
        deadline = time.monotonic() + self.engine.SHUTDOWN_TIMEOUT
        for worker in self.workers:
            worker.join(timeout=max(deadline - time.monotonic(), 0))
        self._retry_until_stopped(self._put_back_unfinished, give_up_after=10)
        self._retry_until_stopped(lambda: liveness.deregister(self.using, self.process_id), give_up_after=10)
        connections.close_all()
        logger.info("worker process stopped id=%s", self.process_id)

    def _keep_alive(self, alive: liveness.Liveness) -> None:
        failures = 0
        next_prune = 0.0
        while not self.stopping.wait(self.engine.HEARTBEAT_INTERVAL if failures == 0 else 0):
            try:
                alive.beat()
                alive.recover()
                held = set().union(*(worker.held() for worker in self.workers))
                alive.release_orphans(held, older_than=ORPHAN_AFTER)
                concurrency.sweep(self.using, timezone.now())
                self._pass_on_cancellations(alive.cancel_requests())
                if time.monotonic() >= next_prune and self.engine.RESULT_RETENTION > 0:
                    liveness.prune_succeeded(self.using, self.engine.RESULT_RETENTION)
                    next_prune = time.monotonic() + PRUNE_INTERVAL
                failures = 0
            except DatabaseError as error:
                logger.warning("heartbeat failed (retrying): %s", error)
                connections[self.using].close()
                self.stopping.wait(backoff_seconds(failures))
                failures += 1

    def _pass_on_cancellations(self, task_ids: set[int]) -> None:
        for worker in self.workers:
            running = worker.running
            if running is not None and running[0] in task_ids:
                running[1].cancelled.set()

    def _put_back_unfinished(self) -> None:
        """Claimed tasks no thread finished (shutdown timeout): ready again, the attempt not counted;
        cancelled instead if a cancel came for them meanwhile."""
        now = timezone.now()
        cancel_requested = Q(cancel_requested=True)
        put = (
            Task.objects.using(self.using)
            .filter(status=Status.RUNNING, claimed_by_id=self.process_id)
            .update(
                status=Case(When(cancel_requested, then=Value(Status.CANCELLED)), default=Value(Status.READY)),
                finished_at=Case(When(cancel_requested, then=Value(now)), default=None),
                attempts=F("attempts") - 1,
                claimed_by=None,
                run_at=now,
            )
        )
        if put:
            logger.warning("put back %d unfinished tasks at shutdown", put)

    def _retry_until_stopped(self, action, give_up_after: int | None = None):
        failures = 0
        while True:
            try:
                return action()
            except DatabaseError as error:
                failures += 1
                if (give_up_after is not None and failures >= give_up_after) or (
                    give_up_after is None and self.stopping.is_set()
                ):
                    logger.error("database unavailable, giving up: %s", error)
                    return None
                logger.warning("database unavailable (retrying): %s", error)
                connections[self.using].close()
                time.sleep(backoff_seconds(failures))
