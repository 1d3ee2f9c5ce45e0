"""`Worker` (one thread claiming and running tasks) and `WorkerGroup` (the threads of one process).

A WorkerGroup registers the process and runs its duties beside the workers: a heartbeat on a thread
and connection of its own (so it never waits behind task work), recovery of dead workers' tasks,
wake-ups, giving back the unstarted rest of a batch stuck behind a slow task, and at stop, putting
back what its threads did not finish, without counting the attempt.

Nothing ends a thread silently: an unexpected error is logged and the loop goes on with backoff; a
thread that dies anyway marks the group failed, which stops it, and the worker command then exits
non-zero for its supervisor to start a new process.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db import DatabaseError, connections, router
from django.utils import timezone
from django.utils.module_loading import import_string

from taskqueue.conf import EngineSettings, load_settings
from taskqueue.engine import databases, executors, liveness
from taskqueue.engine.claim import ClaimedTask, Claimer
from taskqueue.engine.executors import TaskControl
from taskqueue.engine.outcomes import Failed, Recorder, Start
from taskqueue.engine.running import run_task
from taskqueue.models import Task, WorkerProcess
from taskqueue.serialization import ErrorInfo
from taskqueue.worker import timelimits
from taskqueue.worker.maintenance import Maintenance

logger = logging.getLogger("taskqueue.worker")

# A batch grows while tasks take less than this each, and drops to one task when they take longer.
QUICK_TASK_SECONDS = 0.005
# Claimed tasks waiting in a batch behind one that has run this long are given back to the queue (in
# their old place, uncounted), so idle workers can take them: the batch's quick-task horizon.
RELEASE_AFTER = 0.2
RELEASE_CHECK_INTERVAL = 0.05
# How long a stopping group waits for its heartbeat and releaser threads to end.
DUTY_JOIN_TIMEOUT = 30.0
# A scheduler that has not finished a pass for this long is reported dead by the heartbeat (and
# health).
SCHEDULER_STUCK_AFTER = 300.0
# After a wake-up finds nothing due (the enqueuing host's clock a little ahead of ours), look again
# after these waits before going back to the idle poll.
REPOLL_AFTER_WAKE = (0.02, 0.05, 0.1, 0.2, 0.4)


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
        # Why this thread ended unexpectedly (None while it runs, or after a normal stop).
        self.failure: str | None = None
        # Ids of tasks this thread claimed and has not yet recorded an outcome for, and the claimed
        # tasks of its batch not yet started (the group's releaser may take those back).
        self._held: set[int] = set()
        self._waiting: collections.deque[ClaimedTask] = collections.deque()
        self._lock = threading.Lock()
        # The task running now: its id, its control (the heartbeat sets its `cancelled` on a revoke,
        # the watchdog holds it to its time limits), when it started (time.monotonic()), and the
        # task.
        self.running: tuple[int, TaskControl, float, ClaimedTask] | None = None

    def held(self) -> set[int]:
        with self._lock:
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
        group = self.group
        assert group is not None
        try:
            if group.registered.wait() and not self.stopping.is_set():
                self._loop(group)
        except BaseException as error:
            self.failure = f"worker thread {self.name} died: {error!r}"
            logger.critical("%s", self.failure, exc_info=True)
            group.thread_failed(self.failure)
        finally:
            if own_group:
                group.request_stop()
            elif group.burst:
                group.worker_done()
            connections.close_all()

    def _loop(self, group: WorkerGroup) -> None:
        engine = group.engine
        claimer = Claimer(group.using, group.process_id, self.selectors)
        recorder = Recorder(group.using, group.process_id, group.identity, engine.RESULT_RETENTION)
        most = self.batch_size or engine.BATCH_SIZE
        batch = 1
        failures = 0
        repolls = 0
        while not self.stopping.is_set():
            try:
                tasks = claimer.claim(batch, timezone.now())
                failures = 0
            except Exception as error:
                failures = self._trouble(group, error, failures)
                continue
            if not tasks:
                self._flush(recorder)
                if group.burst:
                    break  # nothing due: a burst worker's thread is done
                wait = self.sleep_seconds_when_empty
                if repolls < len(REPOLL_AFTER_WAKE):
                    wait = min(wait, REPOLL_AFTER_WAKE[repolls])
                    repolls += 1
                if self.wake.wait(wait):
                    self.wake.clear()
                    repolls = 0
                continue
            repolls = len(REPOLL_AFTER_WAKE)
            with self._lock:
                self._held.update(task.id for task in tasks)
                self._waiting.extend(tasks)
            started = time.monotonic()
            ran = self._run_batch(recorder, engine)
            self._flush(recorder)
            per_task = (time.monotonic() - started) / max(ran, 1)
            batch = (
                min(batch * 2, most) if per_task < QUICK_TASK_SECONDS and ran == len(tasks) else 1
            )
        self._flush(recorder)

    def _run_batch(self, recorder: Recorder, engine: EngineSettings) -> int:
        """Run the claimed tasks one by one; each starts (with the outcome before it written) just
        before it runs. Returns how many ran."""
        ran = 0
        while True:
            with self._lock:
                if not self._waiting:
                    return ran
                if self.stopping.is_set():
                    # Never started: the group puts them back, uncounted, when it stops.
                    self._waiting.clear()
                    return ran
                task = self._waiting.popleft()
            start = self._begin(recorder, task)
            if start is not Start.RUN:
                with self._lock:
                    self._held.discard(task.id)
                continue
            control = TaskControl(
                self.stopping,
                recorder.worker_name,
                default_timeout=engine.DEFAULT_TIMEOUT,
                timeout_grace=engine.TIMEOUT_GRACE,
            )
            self.running = (task.id, control, time.monotonic(), task)
            outcome = run_task(task, control)
            self.running = None
            recorder.add(outcome)
            ran += 1

    def take_waiting(self) -> list[ClaimedTask]:
        """The claimed tasks of this thread's batch not yet started, handed over (to be given
        back)."""
        with self._lock:
            taken = list(self._waiting)
            self._waiting.clear()
            self._held.difference_update(task.id for task in taken)
        return taken

    def _begin(self, recorder: Recorder, task: ClaimedTask) -> Start:
        """Start `task` (writing the outcomes before it); through a database outage, keep trying
        until the worker stops (then it is left unstarted, for the group to put back)."""
        failures = 0
        while True:
            try:
                return recorder.begin(task)
            except Exception as error:
                if not isinstance(error, DatabaseError):
                    self._unwritable(recorder, error)
                failures = self._trouble(self.group, error, failures)
                if self.stopping.is_set() and failures > 3:
                    self._flush(recorder)
                    return Start.GONE

    def _flush(self, recorder: Recorder) -> None:
        """Write outcomes; through a database outage, keep them and retry until written."""
        failures = 0
        while recorder.pending:
            written = [outcome.task.id for outcome in recorder.pending]
            try:
                recorder.flush()
                with self._lock:
                    self._held.difference_update(written)
            except Exception as error:
                if not isinstance(error, DatabaseError):
                    self._unwritable(recorder, error)
                failures = self._trouble(self.group, error, failures)
                if failures > 1000:
                    logger.error(
                        "giving up writing %d outcomes; their tasks will be recovered",
                        len(recorder.pending),
                    )
                    recorder.pending.clear()

    @staticmethod
    def _unwritable(recorder: Recorder, error: Exception) -> None:
        """Outcomes that cannot be written (not the database's fault) become failures saying why;
        failures that cannot be written either are dropped, and their tasks recovered as orphans."""
        logger.error("outcomes could not be written: %r", error, exc_info=True)
        if all(
            isinstance(o, Failed) and o.error.exc_class == "taskqueue.UnwritableOutcome"
            for o in recorder.pending
        ):
            recorder.pending.clear()
            return
        info = ErrorInfo(
            "taskqueue.UnwritableOutcome", f"The outcome could not be stored: {error!r}"[:1000], ""
        )
        recorder.pending = [Failed(outcome.task, info) for outcome in recorder.pending]

    def _trouble(self, group: WorkerGroup | None, error: Exception, failures: int) -> int:
        if isinstance(error, DatabaseError):
            logger.warning("database error in %s (retrying): %s", self.name, error)
        else:
            logger.error("unexpected error in %s (retrying): %r", self.name, error, exc_info=True)
        if group is not None:
            connections[group.using].close()
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
        process_exits: bool = False,
        burst: bool = False,
    ) -> None:
        """`schedule`: also run the scheduler of recurring tasks in this process. `process_exits`:
        the process ends when the group does (the worker command), so tasks still running in its
        threads after SHUTDOWN_TIMEOUT are put back; otherwise (a group run from Python) they are
        left to end, since a thread cannot be stopped from outside, and the group waits for them.
        `burst`: each thread ends once it finds nothing due, and the group with the last one.

        Raises ValueError for a name the worker table cannot hold (it would never register)."""
        longest = WorkerProcess._meta.get_field("name").max_length or 0
        if not name or len(name) > longest:
            raise ValueError(
                f"A worker name must be 1 to {longest} characters, "
                f"got {len(name)}: {name[:40]!r}..."
            )
        super().__init__(name=f"{name}-group", daemon=True)
        self.schedule = schedule
        self.process_exits = process_exits
        self.burst = burst
        self._busy_workers = len(workers)
        self._busy_lock = threading.Lock()
        self.workers = list(workers)
        # The worker's name (--name): shown in the admin and logs, and, as "name@host:pid" once the
        # process is registered, in each task's record of who ran it (`identity`).
        self.worker_name = name
        self.engine = settings or load_settings()
        self.using = router.db_for_write(Task)
        self.process_id: int = 0
        self.identity = name
        self.stopping = threading.Event()
        # Why a thread of this group died (None while all is well): the worker command exits
        # non-zero.
        self.failure: str | None = None
        # Set once the process is registered (or the group gave up): its workers may claim from then
        # on.
        self.registered = threading.Event()
        self._ended = threading.Event()
        self.scheduler: threading.Thread | None = None
        self._duties: list[threading.Thread] = []
        for worker in self.workers:
            worker.group = self

    def request_stop(self) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.request_stop()

    def worker_done(self) -> None:
        """A burst worker's thread found nothing due and ended; the last one ends the group."""
        with self._busy_lock:
            self._busy_workers -= 1
            last = self._busy_workers == 0
        if last:
            self.request_stop()

    def stop(self) -> None:
        """Ask every thread to stop and wait. Tasks not started are put back; running ones are asked
        to stop (`stop_requested()`) and waited for."""
        self.request_stop()
        self.join()

    def thread_failed(self, reason: str) -> None:
        """A thread of this process died: stop, so the process exits for its supervisor to restart
        it."""
        if self.failure is None:
            self.failure = reason
        self.request_stop()

    def wake_all(self) -> None:
        for worker in self.workers:
            worker.wake.set()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:
            self.failure = self.failure or f"worker process duties died: {error!r}"
            logger.critical("%s", self.failure, exc_info=True)
            self.request_stop()
            self.registered.set()
        finally:
            self._ended.set()
            connections.close_all()

    def _run(self) -> None:
        selectors = list(dict.fromkeys(s for worker in self.workers for s in worker.selectors))
        threads = len(self.workers)
        process = self._retry_until_stopped(
            lambda: liveness.register(self.using, self.worker_name, selectors, threads)
        )
        if process is None:
            self.registered.set()
            return
        self.process_id = process.pk
        self.identity = str(process)
        executors.worker_starting()
        self._start_duty(
            "heartbeat", lambda: self._heartbeat(liveness.Heartbeat(self.using, process))
        )
        self._start_duty("releaser", self._release_stuck_batches)
        if self.engine.LISTEN_NOTIFY and databases.for_alias(self.using).wakes_workers:
            from taskqueue.worker.wakeup import Listener

            Listener(self.using, self.wake_all, self.stopping).start()
        logger.info(
            "worker process started id=%s name=%s queues=%s threads=%s",
            self.process_id,
            self.worker_name,
            ",".join(selectors),
            threads,
        )
        self.registered.set()
        for worker in self.workers:
            if not worker.is_alive():  # a worker started on its own is already running
                worker.start()
        if self.schedule:
            from taskqueue.worker.scheduler import Scheduler

            self.scheduler = Scheduler(self.engine, self.stopping)
            self.scheduler.start()
        recovery = liveness.Recovery(
            self.using,
            self.process_id,
            self.engine.HEARTBEAT_INTERVAL,
            self.engine.WORKER_DEAD_AFTER,
        )
        self._maintain(recovery)
        self._shut_down()

    def _shut_down(self) -> None:
        deadline = time.monotonic() + self.engine.SHUTDOWN_TIMEOUT
        for worker in self.workers:
            worker.join(timeout=max(deadline - time.monotonic(), 0))
        busy = [worker for worker in self.workers if worker.is_alive()]
        keep: set[int] = set()
        if busy and not self.process_exits:
            keep = set().union(*(worker.held() for worker in busy))
            logger.warning(
                "waiting for %d tasks still running after the shutdown timeout", len(busy)
            )
        self._retry_until_stopped(
            lambda: liveness.put_back(self.using, self.process_id, keep=keep), give_up_after=10
        )
        if keep:
            for worker in busy:
                # its task ends, and its outcome is written, under this process's heartbeat
                worker.join()
        self._ended.set()
        # A beat still under way would register the process again after its row is gone: the
        # duties end first (a beat's statements time out within seconds).
        for duty in self._duties:
            duty.join(timeout=DUTY_JOIN_TIMEOUT)
        self._retry_until_stopped(
            lambda: liveness.deregister(self.using, self.process_id), give_up_after=10
        )
        logger.info("worker process stopped id=%s", self.process_id)

    def _start_duty(self, name: str, duty: Callable[[], None]) -> None:
        def run() -> None:
            try:
                duty()
            except BaseException as error:
                logger.critical("%s thread died", name, exc_info=True)
                self.thread_failed(f"{name} thread died: {error!r}")
            finally:
                connections.close_all()

        thread = threading.Thread(target=run, name=f"taskqueue-{name}", daemon=True)
        self._duties.append(thread)
        thread.start()

    def _heartbeat(self, heartbeat: liveness.Heartbeat) -> None:
        """Beat until the group has ended (not just stopping: tasks still finishing need it)."""
        failures = 0
        while True:
            try:
                heartbeat.beat(sum(map(self._counts_alive, self.workers)), self._scheduler_alive())
                failures = 0
            except Exception as error:
                logger.warning("heartbeat failed (retrying): %r", error)
                connections[self.using].close()
                failures += 1
            if self._ended.wait(
                self.engine.HEARTBEAT_INTERVAL if failures == 0 else backoff_seconds(failures)
            ):
                return

    @staticmethod
    def _counts_alive(worker: Worker) -> bool:
        """Alive for the health check: running, not yet started, or ended by a stop (not by a
        failure)."""
        return (
            worker.is_alive()
            or worker.ident is None
            or (worker.stopping.is_set() and worker.failure is None)
        )

    def _scheduler_alive(self) -> bool | None:
        """None without a scheduler; False once it died or has not finished a pass for
        SCHEDULER_STUCK_AFTER."""
        if self.scheduler is None:
            return None
        if self.stopping.is_set():
            return True
        last_pass = getattr(self.scheduler, "last_pass_ok_at", time.monotonic())
        return self.scheduler.is_alive() and time.monotonic() - last_pass < SCHEDULER_STUCK_AFTER

    def _maintain(self, recovery: liveness.Recovery) -> None:
        """The process's maintenance steps every HEARTBEAT_INTERVAL (backing off while they fail),
        and a watch that every thread still lives."""
        maintenance = Maintenance(self, recovery)
        failures = 0
        while not self.stopping.wait(
            self.engine.HEARTBEAT_INTERVAL if failures == 0 else backoff_seconds(failures)
        ):
            self._watch_threads()
            failures = 0 if maintenance.run_once() else failures + 1

    def _watch_threads(self) -> None:
        dead = [
            worker.name
            for worker in self.workers
            if not worker.is_alive() and not worker.stopping.is_set()
        ]
        dead += [duty.name for duty in self._duties if not duty.is_alive()]
        if self.scheduler is not None and not self.scheduler.is_alive():
            dead.append(self.scheduler.name)
        if dead:
            self.thread_failed(f"threads died: {', '.join(dead)}")

    def _release_stuck_batches(self) -> None:
        """Give back the unstarted rest of a batch whose current task has run past RELEASE_AFTER;
        and hold running tasks to their time limits (see taskqueue.worker.timelimits)."""
        while not self._ended.wait(RELEASE_CHECK_INTERVAL):
            timelimits.enforce(self, time.monotonic())
            for worker in self.workers:
                running = worker.running
                if running is None or time.monotonic() - running[2] < RELEASE_AFTER:
                    continue
                waiting = worker.take_waiting()
                if waiting:
                    self._give_back(waiting)

    def _give_back(self, tasks: list[ClaimedTask]) -> None:
        claims = [(task.id, task.claims) for task in tasks]
        released = self._retry_until_stopped(
            lambda: liveness.release_unstarted(self.using, claims), give_up_after=5
        )
        if released is None:
            logger.warning(
                "could not give back %d claimed tasks; they will be put back as orphans", len(tasks)
            )
        elif released:
            logger.info("gave back %d claimed tasks waiting behind a long task", released)
            self.wake_all()

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
