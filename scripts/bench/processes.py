"""Processes: a process's memory and CPU time from /proc, stopping a child's process group,
SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from scripts.bench.common import CHILD_STOP_SECONDS, BenchError


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_group(process: subprocess.Popen[str]) -> None:
    """Stop a child started in a session of its own, then anything left in its process group.

    The child gets SIGTERM and stops its workers itself; it is reaped only after its group has been
    swept, so the group id (its PID) cannot have been reused by then. A child that failed on its own
    is already reaped: its group then exists only while processes it left behind remain in it (Linux
    does not reuse a PID still in use as a group id).
    """
    if process.returncode is not None:
        if process.returncode != 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_SECONDS
    while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def exit_on_signal(signum: int, frame: object) -> None:
    signal.signal(signum, signal.SIG_IGN)
    raise SystemExit(128 + signum)
