"""Liveness under database faults, proven with real worker processes.

- A transaction held on a worker's own process row (PostgreSQL: a row lock; SQLite: the database's
  write lock) for longer than WORKER_DEAD_AFTER: the heartbeat gives up its statement instead of
  waiting behind it (PostgreSQL), nobody presumes the worker dead, its long task runs once, and
  afterwards its heartbeat resumes and it takes new tasks.
- The LISTEN/NOTIFY wake-up connection (PostgreSQL) killed with pg_terminate_backend, cut off for a
  while, or left open but silent: the worker listens again and is woken well before its next poll.

Runs are read from the records the tasks write themselves (O_APPEND lines, see
sample_queues.record).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from taskqueue import BaseQueue, Retry, Stopped, TaskInfo
from taskqueue.engine.databases import postgresql
from taskqueue.models import Status, Task, WorkerProcess
from tests.conftest import database_url, recorded, wait_until
from tests.taskqueue import sample_queues as q

# Heartbeats every 0.5 s and a worker presumed dead (where that cannot be proved) after 3 s of
# silence, so a fault can outlast WORKER_DEAD_AFTER several times within a test.
FAST_LIVENESS = {"TASKQUEUE_HEARTBEAT_INTERVAL": "0.5", "TASKQUEUE_WORKER_DEAD_AFTER": "3"}
DEAD_AFTER = float(FAST_LIVENESS["TASKQUEUE_WORKER_DEAD_AFTER"])
# How long the tests hold a transaction on the worker's row: well past WORKER_DEAD_AFTER, and past
# the heartbeat's lock timeout (2 s) and statement timeout (5 s).
HOLD_SECONDS = 8.0
# The idle poll of the wake-up tests: long, so that polling cannot explain a quick pickup.
POLL_INTERVAL = 30.0
# A notification reaches a listening worker within milliseconds; this allows for a loaded machine.
PROMPT = 3.0

on_postgresql = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="row locks and LISTEN are PostgreSQL's"
)
on_sqlite = pytest.mark.skipif(
    "connection.vendor != 'sqlite'", reason="SQLite's database-wide write lock"
)


class GatedQueue(BaseQueue[dict]):
    """A long task the test ends: records `start <id> <pid>`, waits until the file `gate` exists (at
    most `most` seconds), records `end <id> <pid>`. A worker shutting down puts it back."""

    queue_name = "liveness-gated"

    @classmethod
    def process(cls, task_info: TaskInfo[dict]) -> Retry | None:
        arg = task_info.get_arg()
        q.record(f"start {task_info.id} {os.getpid()}")
        deadline = time.monotonic() + arg.get("most", 120)
        while not Path(arg["gate"]).exists() and time.monotonic() < deadline:
            if task_info.stop_requested():
                q.record(f"stopped {task_info.id} {os.getpid()}")
                raise Stopped
            time.sleep(0.05)
        q.record(f"end {task_info.id} {os.getpid()}")
        return None


def runs(record_file: Path, event: str) -> Counter[str]:
    """How many times each gated task recorded `event` (start or end)."""
    return Counter(
        line.split()[1] for line in recorded(record_file) if line.startswith(f"{event} ")
    )


def log_of(process: subprocess.Popen) -> str:
    return Path(process.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def row_of(process: subprocess.Popen) -> WorkerProcess | None:
    return WorkerProcess.objects.filter(pid=process.pid).first()


def ran_in(record_file: Path, process: subprocess.Popen, arg: str) -> bool:
    """Whether `process` ran the RecordingQueue task of `arg` (lines `<id> <pid> <arg>`)."""
    return any(line.split()[1:] == [str(process.pid), arg] for line in recorded(record_file))


def still_registered(process_id: int) -> WorkerProcess:
    """The worker process's row, which is deleted only when the process is presumed dead."""
    row = WorkerProcess.objects.filter(pk=process_id).first()
    assert row is not None, f"worker process {process_id} was presumed dead: its row is gone"
    return row


def beating(process: subprocess.Popen) -> bool:
    row = row_of(process)
    return row is not None and row.heartbeat_at > row.started_at


# --- 1. A transaction held on the worker's own row -------------------------------------------


@contextlib.contextmanager
def transaction_holding_the_row_of(process_id: int) -> Iterator[None]:
    """Another connection holds the worker process's row in an open transaction, until the block
    ends.

    PostgreSQL: `SELECT ... FOR UPDATE` on the row (the heartbeat's UPDATE waits for it). SQLite:
    `BEGIN IMMEDIATE` and an uncommitted UPDATE of the row, on a sqlite3 connection of its own to
    the same file: the database's write lock, which every writer then waits for."""
    if connection.vendor == "postgresql":
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        with psycopg.connect(**params) as holder:  # not autocommit: the SELECT opens a transaction
            locked = holder.execute(
                "SELECT id FROM taskqueue_workerprocess WHERE id = %s FOR UPDATE", [process_id]
            ).fetchall()
            assert locked == [(process_id,)]
            try:
                yield
            finally:
                holder.rollback()
        return
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=20)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE taskqueue_workerprocess SET name = name WHERE id = ?", [process_id])
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
    finally:
        holder.close()


def hold_the_row_of_a_worker_running_a_long_task(
    workers, record_file, tmp_path, timed_out=None, **env
) -> dict:
    """The scenario of part 1, run to its end. Worker A runs a long task; worker B serves the same
    queue, so B would take the task if it presumed A dead. A transaction holds A's row for
    HOLD_SECONDS, then A's task is let finish and A is given new tasks (on a queue only A serves).

    `timed_out`: a regex that A's log must match while the row is still held (the heartbeat giving
    up its statement). Returns timings, and A's process and row, for the callers' own assertions."""
    gate = tmp_path / "gate"
    info = GatedQueue.add_task({"gate": str(gate)})
    first = workers.start("--queues", "liveness-gated,recording", **FAST_LIVENESS, **env)
    wait_until(
        lambda: runs(record_file, "start")[str(info.id)] == 1,
        timeout=60,
        message="A started the task",
    )
    second = workers.start("--queues", "liveness-gated", **FAST_LIVENESS, **env)
    wait_until(lambda: beating(second), timeout=60, message="B registered and beats")
    row = row_of(first)
    assert row is not None and Task.objects.get(pk=info.id).claimed_by_id == row.pk
    claims = Task.objects.get(pk=info.id).claims
    timings: dict[str, float] = {}

    with transaction_holding_the_row_of(row.pk):
        held_at = time.monotonic()
        if timed_out is not None:
            wait_until(
                lambda: re.search(timed_out, log_of(first)),
                timeout=HOLD_SECONDS - 1,
                message="A's heartbeat gave up its statement while the row was held",
            )
            timings["first timeout"] = time.monotonic() - held_at
        time.sleep(max(HOLD_SECONDS - (time.monotonic() - held_at), 0))
        silence = timezone.now() - still_registered(row.pk).heartbeat_at
        task = Task.objects.get(pk=info.id)
        assert (task.status, task.claimed_by_id, task.claims) == (Status.RUNNING, row.pk, claims), (
            "still A's"
        )
        assert first.poll() is None and second.poll() is None
    released = timezone.now()
    released_at = time.monotonic()
    timings["silence at release"] = silence.total_seconds()
    # A heartbeat timer alone would have called A dead: only the proof of life (pid, advisory lock)
    # saved it.
    assert silence > timedelta(seconds=DEAD_AFTER), (
        f"A's heartbeat was silent only {silence} while the row was held"
    )

    wait_until(
        lambda: still_registered(row.pk).heartbeat_at > released,
        timeout=30,
        message="A's heartbeat resumed after the transaction ended",
    )
    timings["heartbeat resumed"] = time.monotonic() - released_at

    gate.touch()
    wait_until(
        lambda: runs(record_file, "end")[str(info.id)] == 1, timeout=30, message="A's task finished"
    )
    wait_until(
        lambda: Task.objects.get(pk=info.id).status == Status.SUCCEEDED,
        timeout=30,
        message="it succeeded",
    )
    new = [f"after-{n}" for n in range(3)]
    new_at = time.monotonic()
    q.RecordingQueue.add_tasks(new)
    wait_until(
        lambda: all(ran_in(record_file, first, a) for a in new),
        timeout=30,
        message="A ran new tasks",
    )
    timings["new tasks ran"] = time.monotonic() - new_at

    assert runs(record_file, "start")[str(info.id)] == 1, "the long task ran exactly once"
    assert runs(record_file, "end")[str(info.id)] == 1
    task = Task.objects.get(pk=info.id)
    assert (task.attempts, task.abandoned, task.errors) == (1, False, []), (
        "never taken from A nor charged again"
    )
    after = still_registered(row.pk)  # the same row: never presumed dead and registered again
    assert (after.pid, after.threads_alive) == (first.pid, 1), "A's worker thread lives"
    assert first.poll() is None, "A did not exit"
    assert second.poll() is None, "B did not exit"
    logs = log_of(first) + log_of(second)
    for bad in (
        "presumed dead",
        "registering again",
        "task abandoned",
        "died",
        "unexpected error",
        "Traceback",
    ):
        assert bad not in logs, f"{bad!r} in the workers' logs"
    print(f"timings (s): { {name: round(value, 2) for name, value in timings.items()} }")
    return {"timings": timings, "first": first, "row": after}


@pytest.mark.slow
@on_postgresql
def test_the_heartbeat_times_out_behind_a_lock_on_its_worker_row_and_the_worker_lives_on(
    workers, record_file, tmp_path
) -> None:
    outcome = hold_the_row_of_a_worker_running_a_long_task(
        workers,
        record_file,
        tmp_path,
        # Its lock_timeout (2 s), or else its statement_timeout (5 s), ends the heartbeat's UPDATE.
        timed_out=r"heartbeat failed \(retrying\): "
        r".*canceling statement due to (lock|statement) timeout",
    )
    # The heartbeat gave up within its lock timeout (plus a heartbeat interval and a loaded
    # machine's delays).
    assert outcome["timings"]["first timeout"] < postgresql.HEARTBEAT_LOCK_TIMEOUT_MS / 1000 + 4
    # Every try after the first waited out its lock timeout too, and the heartbeat kept trying: it
    # never hung.
    failures = log_of(outcome["first"]).count("heartbeat failed (retrying)")
    assert failures >= 2, f"the heartbeat tried only {failures} times while the row was held"
    with (
        connection.cursor() as cursor
    ):  # A's session holds its advisory lock again: alive, provably
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = "
            "%s AND objid = %s",
            [postgresql.LOCK_NAMESPACE, outcome["row"].pk],
        )
        assert cursor.fetchone()[0] == 1


@pytest.mark.slow
@on_sqlite
@pytest.mark.parametrize(
    "busy_timeout",
    [
        pytest.param(
            None, id="the-busy-timeout-outlasts-the-transaction"
        ),  # 20 s: each write waits
        pytest.param("1", id="the-busy-timeout-gives-up-first"),  # each write fails, and is retried
    ],
)
def test_a_write_transaction_held_past_worker_dead_after_neither_wedges_nor_kills_the_worker(
    workers, record_file, tmp_path, busy_timeout
) -> None:
    env = {"DATABASE_URL": f"{database_url()}?timeout={busy_timeout}"} if busy_timeout else {}
    outcome = hold_the_row_of_a_worker_running_a_long_task(
        workers,
        record_file,
        tmp_path,
        timed_out=r"heartbeat failed \(retrying\): .*database is locked" if busy_timeout else None,
        **env,
    )
    if busy_timeout is None:
        assert "heartbeat failed" not in log_of(outcome["first"]), (
            "the heartbeat waited for the lock"
        )


# --- 2. The wake-up connection, killed, cut off or silent -----------------------------------


def listeners(other_than: int | None = None) -> list[tuple[int, int]]:
    """(pid, client port) of the backends whose last statement was the worker's LISTEN (the listener
    sets no application_name); `other_than`: a backend pid to leave out."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, client_port FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE %s AND pid <> pg_backend_pid() "
            "AND pid <> %s",
            ["LISTEN%", other_than or 0],
        )
        return cursor.fetchall()


def wait_for_listener(timeout: float, other_than: int | None = None) -> tuple[int, int]:
    found: list[tuple[int, int]] = []

    def one() -> bool:
        found[:] = listeners(other_than)
        return len(found) == 1

    wait_until(
        one,
        timeout=timeout,
        message="exactly one worker listens" + (" again" if other_than else ""),
    )
    return found[0]


def terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(%s, 10000)", [pid]
        )  # waits until the backend is gone
        assert cursor.fetchone()[0], f"backend {pid} was not terminated"


def picked_up(record_file: Path, arg: str) -> bool:
    return any(line.split()[2:] == [arg] for line in recorded(record_file))


class Pair:
    """One proxied connection: the worker's socket and ours to PostgreSQL."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.upstream_port = upstream.getsockname()[1]  # what pg_stat_activity shows as client_port
        self.silent = False

    def silence(self) -> None:
        """The server side goes (its backend ends), the worker's side stays open and is answered by
        nobody: what the worker reads is nothing, what it sends is acknowledged (by this host's TCP)
        and dropped. A hung proxy or pooler does this; keepalives and tcp_user_timeout cannot
        tell."""
        self.silent = True
        with contextlib.suppress(OSError):
            self.upstream.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 to PostgreSQL, run by threads of this test process, so a test
    can refuse new connections for a while or silence one connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.refusing = threading.Event()  # set: each new connection is closed at once
        self.pairs: list[Pair] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._spawn(self._accept)

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, name="test-tcp-proxy", daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            if self.refusing.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pair = Pair(client, upstream)
            with self._lock:
                if self._closed:
                    pair.cut()
                    return
                self.pairs.append(pair)
            self._spawn(self._pump, pair, client, upstream)
            self._spawn(self._pump, pair, upstream, client)

    @staticmethod
    def _pump(pair: Pair, source: socket.socket, destination: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if pair.silent:
                continue  # read (so acknowledged) and dropped
            try:
                destination.sendall(data)
            except OSError:
                break
        if not pair.silent or source is pair.client:
            pair.cut()

    def pair_of(self, upstream_port: int) -> Pair:
        with self._lock:
            (pair,) = [pair for pair in self.pairs if pair.upstream_port == upstream_port]
        return pair

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pairs = list(self.pairs)
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        for pair in pairs:
            pair.cut()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def proxy(workers) -> Iterator[TcpProxy]:
    """A proxy to the test database; workers started through it are stopped before it closes."""
    settings = connection.settings_dict
    forwarder = TcpProxy((settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432)))
    yield forwarder
    workers.stop_all()  # they shut down (putting back, deregistering) through the proxy
    forwarder.close()


def through(proxy: TcpProxy) -> str:
    """The test database's URL, by way of `proxy`."""
    settings = connection.settings_dict
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    return f"postgres://{settings['USER']}{password}@127.0.0.1:{proxy.port}/{settings['NAME']}"


def start_idle_listening_worker(
    workers, record_file, **env
) -> tuple[subprocess.Popen, tuple[int, int], float]:
    """A worker polling every POLL_INTERVAL on the `recording` queue, just woken by a first task and
    now asleep: returns it, its listening backend, and when it last looked for work (monotonic).
    Until POLL_INTERVAL after that, only a wake-up makes it look again."""
    worker = workers.start("--queues", "recording", "--interval", str(POLL_INTERVAL), **env)
    wait_until(lambda: row_of(worker) is not None, timeout=60, message="the worker registered")
    listener = wait_for_listener(timeout=30)
    time.sleep(1.5)  # past the first polls of its start
    q.RecordingQueue.add_task("first")
    wait_until(
        lambda: picked_up(record_file, "first"),
        timeout=PROMPT,
        message="a notification woke the worker",
    )
    time.sleep(1.5)  # past the quick looks again that follow a wake-up
    return worker, listener, time.monotonic()


@pytest.mark.slow
@on_postgresql
def test_a_worker_whose_listen_backend_is_terminated_listens_again_and_wakes_before_polling(
    workers, record_file
) -> None:
    worker, (backend, _), _ = start_idle_listening_worker(workers, record_file)
    for round_ in range(2):  # twice: its reconnect backoff starts over once it listens again
        terminate(backend)
        terminated = time.monotonic()
        backend, _ = wait_for_listener(timeout=20, other_than=backend)
        listening_again = time.monotonic() - terminated
        time.sleep(
            1.5
        )  # past the looks its reconnect wake-up made: from now on only a notification wakes it
        enqueued = time.monotonic()
        q.RecordingQueue.add_task(f"after-terminate-{round_}")
        wait_until(
            lambda: picked_up(record_file, f"after-terminate-{round_}"),  # noqa: B023 - called at once
            timeout=PROMPT,
            message="a notification woke the worker",
        )
        print(
            f"round {round_}: listening again {listening_again:.2f}s, "
            f"woken {time.monotonic() - enqueued:.2f}s"
        )
        assert listening_again < 10
    assert worker.poll() is None
    assert "wake-up listener reconnecting" in log_of(worker)


@pytest.mark.slow
@on_postgresql
def test_a_task_enqueued_while_the_listener_was_cut_off_runs_as_soon_as_the_worker_listens_again(
    workers, record_file, proxy
) -> None:
    worker, (backend, _), last_look = start_idle_listening_worker(
        workers, record_file, DATABASE_URL=through(proxy)
    )
    # its other connections live on; a new one (the listener's next) is refused
    proxy.refusing.set()
    terminate(backend)
    info = q.RecordingQueue.add_task("while-cut-off")  # notified to nobody: no session listens
    time.sleep(3)
    assert Task.objects.get(pk=info.id).status == Status.READY, (
        "nothing took it while nobody listened"
    )
    assert not listeners(), "the worker could not listen meanwhile"
    proxy.refusing.clear()
    reopened = time.monotonic()

    wait_until(
        lambda: picked_up(record_file, "while-cut-off"), timeout=15, message="the worker took it"
    )
    took = time.monotonic() - reopened
    print(
        f"picked up {took:.2f}s after the database could be reached "
        f"again, {time.monotonic() - last_look:.2f}s "
        f"after the worker's last look (poll interval {POLL_INTERVAL:.0f}s)"
    )
    # Within the listener's reconnect backoff (at most 5 s), and long before its next poll.
    assert took < 10
    assert time.monotonic() - last_look < POLL_INTERVAL - 5, "not by polling"
    wait_for_listener(timeout=10)
    assert worker.poll() is None


@pytest.mark.slow
@on_postgresql
@pytest.mark.timeout(240)
def test_a_silent_listen_connection_is_found_out_by_the_probe_and_wake_ups_resume(
    workers, record_file, proxy
) -> None:
    from taskqueue.worker.wakeup import PROBE_INTERVAL, PROBE_TIMEOUT

    worker, (backend, port), _ = start_idle_listening_worker(
        workers, record_file, DATABASE_URL=through(proxy)
    )
    proxy.pair_of(port).silence()
    silenced = time.monotonic()
    # The probe runs PROBE_INTERVAL after the listener last connected, at most; its answer is due
    # PROBE_TIMEOUT later, and then the listener connects again.
    bound = PROBE_INTERVAL + PROBE_TIMEOUT + 15
    wait_for_listener(timeout=bound + 10, other_than=backend)
    found_out = time.monotonic() - silenced
    time.sleep(1.5)
    enqueued = time.monotonic()
    q.RecordingQueue.add_task("after-silence")
    wait_until(
        lambda: picked_up(record_file, "after-silence"),
        timeout=PROMPT,
        message="a notification woke it",
    )
    print(
        f"listening again {found_out:.1f}s after the silence, "
        f"woken {time.monotonic() - enqueued:.2f}s"
    )
    assert found_out < bound
    assert worker.poll() is None
