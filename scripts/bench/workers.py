"""The worker processes a measurement starts, all stopped when it ends, and the problems it saw.

Child side: imported once Django is set up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scripts.bench.common import (
    ENTRY_MODULE,
    NOOP_QUEUE,
    POLL_SECONDS,
    PROJECT,
    SETTLE_SECONDS,
    WORKER_STOP_SECONDS,
    BenchError,
)
from scripts.bench.processes import cpu_seconds
from taskqueue.models import WorkerProcess


@dataclass
class StartedWorker:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_lines(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]


@dataclass
class Bench:
    """One measurement: the worker processes it started (all stopped on exit) and the problems
    seen."""

    log_dir: Path
    problems: list[str] = field(default_factory=list)
    workers: list[StartedWorker] = field(default_factory=list)

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_workers()

    def start_workers(
        self,
        count: int,
        queue: str = NOOP_QUEUE,
        retention: bool = True,
        env: dict[str, str] | None = None,
        settle: float = SETTLE_SECONDS,
    ) -> list[StartedWorker]:
        """Start worker processes, wait until each has registered, then let them settle into
        idling."""
        if retention:
            command = [
                sys.executable,
                "manage.py",
                "taskqueue_worker",
                "--queues",
                queue,
                "--threads",
                "1",
            ]
        else:
            command = [sys.executable, "-m", ENTRY_MODULE, "--serve-without-retention", queue]
        started = []
        for _ in range(count):
            log_path = self.log_dir / f"worker-{os.getpid()}-{len(self.workers)}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    command,
                    cwd=PROJECT,
                    env=os.environ | (env or {}),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            started.append(StartedWorker(process, log_path))
        self.workers.extend(started)
        self.wait_registered(started)
        time.sleep(settle)
        return started

    def wait_registered(self, workers: list[StartedWorker], timeout: float = 30.0) -> None:
        pids = [worker.pid for worker in workers]
        deadline = time.monotonic() + timeout
        while WorkerProcess.objects.filter(pid__in=pids).count() < len(pids):
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"worker processes {pids} did not register within {timeout:.0f}s")
            time.sleep(POLL_SECONDS)

    def worker_cpu_seconds(self) -> float:
        return sum(cpu_seconds(worker.pid) for worker in self.workers)

    def check_alive(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is not None:
                tail = "\n".join(worker.log_lines()[-15:])
                raise BenchError(
                    f"worker {worker.pid} exited with {worker.process.returncode}:\n{tail}"
                )

    def stop_workers(self) -> None:
        """SIGTERM, as a deployment would stop them; kill what has not exited after
        WORKER_STOP_SECONDS."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                code = worker.process.wait(timeout=WORKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
                self.problems.append(
                    f"worker {worker.pid} did not stop within {WORKER_STOP_SECONDS:.0f}s of SIGTERM"
                )
                code = 0
            if code != 0:
                self.problems.append(f"worker {worker.pid} exited with {code} after SIGTERM")
            self.problems.extend(
                f"worker {worker.pid} logged: {line}" for line in worker.log_lines()
            )
        self.workers.clear()
