"""The databases measured: a fresh SQLite file and a throwaway PostgreSQL cluster, and the
environment the children (measuring processes and their workers) get for each."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from scripts.bench.common import (
    MIGRATE_SECONDS,
    POSTGRES,
    PROJECT,
    SQLITE,
    TASKS_MODULE,
    BenchError,
)
from scripts.pgcluster import DEFAULT_BIN_DIR, Cluster, ClusterError, binaries_available

# What child processes keep of this process's environment (as the test suite's worker fixture does).
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYENV_VERSION")
SECRET_KEY = "bench-only-secret-key-8f3Kq9zL2wXv7Rt5Yp1Nm4Bc6Hd0Js8Ga2Ue"


@dataclass(frozen=True)
class Database:
    label: str
    url: str
    description: str

    def env(self) -> dict[str, str]:
        inherited = {key: value for key, value in os.environ.items() if key in INHERITED}
        return inherited | {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "ENV_FILE": "",
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": self.url,
            "LOG_LEVEL": "WARNING",
            "TASKQUEUE_TASK_MODULES": TASKS_MODULE,
            "PYTHONUNBUFFERED": "1",
        }


def migrate(database: Database) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=PROJECT,
        env=database.env(),
        capture_output=True,
        text=True,
        timeout=MIGRATE_SECONDS,
    )
    if result.returncode != 0:
        raise BenchError(f"migrating {database.label} failed:\n{result.stdout}{result.stderr}")


def filesystem(path: Path) -> str:
    """The type of the filesystem `path` is on, from /proc/mounts."""
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        mount_point, fs_type = line.split()[1:3]
        if path.is_relative_to(mount_point) and len(mount_point) > len(best):
            best, kind = mount_point, fs_type
    return kind


def postgres_version() -> str:
    result = subprocess.run(
        [str(DEFAULT_BIN_DIR / "postgres"), "--version"], capture_output=True, text=True, timeout=30
    )
    return result.stdout.strip().removeprefix("postgres (PostgreSQL) ") or "15"


def open_databases(work_dir: Path, stack: contextlib.ExitStack) -> tuple[list[Database], list[str]]:
    """A fresh SQLite file and, where the binaries exist, a throwaway PostgreSQL cluster (stopped on
    exit)."""
    sqlite_file = work_dir / "bench.sqlite3"
    databases = [
        Database(
            SQLITE,
            f"sqlite:///{sqlite_file}",
            f"SQLite {sqlite3.sqlite_version}: the project's settings (WAL, synchronous=NORMAL, "
            f"BEGIN IMMEDIATE), file on {filesystem(work_dir)}",
        )
    ]
    notes: list[str] = []
    if not binaries_available():
        notes.append(f"No PostgreSQL binaries in {DEFAULT_BIN_DIR}: PostgreSQL was not measured.")
        return databases, notes
    try:
        cluster = Cluster.create(fast=False)
        stack.callback(cluster.destroy)
        cluster.start()
        cluster.create_database()
    except ClusterError as error:
        notes.append(
            f"The throwaway PostgreSQL cluster did not start ({error}): PostgreSQL was not "
            "measured."
        )
        return databases, notes
    databases.append(
        Database(
            POSTGRES,
            cluster.url,
            f"PostgreSQL {postgres_version()}: throwaway cluster on 127.0.0.1, default "
            "postgresql.conf, "
            "durability ON (fsync, synchronous_commit, full_page_writes), data "
            f"on {filesystem(cluster.data_dir)}",
        )
    )
    return databases, notes
