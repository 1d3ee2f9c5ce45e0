"""A throwaway PostgreSQL cluster for the test suite and the benchmark.

Starts `postgres` from the Debian binaries on 127.0.0.1 and a free port, with its data in a
temporary directory, and removes everything on stop. Run as root, the server runs as the `postgres`
user (it refuses to run as root). Tests that restart the database attach to the running cluster
through the environment variables that `Cluster.export()` sets.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BIN_DIR = Path(os.environ.get("PG_BIN_DIR", "/usr/lib/postgresql/15/bin"))
DATABASE = "taskqueue"
# For tests only: durability off makes each commit cheap; the benchmark keeps PostgreSQL's defaults.
FAST_OPTIONS = ("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
ENV_BIN_DIR, ENV_DATA_DIR, ENV_PORT = "TEST_PG_BIN_DIR", "TEST_PG_DATA_DIR", "TEST_PG_PORT"


class ClusterError(RuntimeError):
    pass


def binaries_available(bin_dir: Path = DEFAULT_BIN_DIR) -> bool:
    return all((bin_dir / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    bin_dir: Path
    data_dir: Path
    port: int
    fast: bool = True

    @classmethod
    def create(cls, bin_dir: Path = DEFAULT_BIN_DIR, fast: bool = True) -> Cluster:
        """Initialise a new cluster in a temporary directory (not started yet)."""
        if not binaries_available(bin_dir):
            raise ClusterError(
                f"No PostgreSQL binaries in {bin_dir} (apt-get install postgresql-15)."
            )
        root = Path(tempfile.mkdtemp(prefix="taskqueue-pg-"))
        cluster = cls(bin_dir=bin_dir, data_dir=root / "data", port=free_port(), fast=fast)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
        cluster._run(
            "initdb", "-D", str(cluster.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        return cluster

    @classmethod
    def attached(cls) -> Cluster | None:
        """The cluster a test runner started for this process tree, if any."""
        if not os.environ.get(ENV_DATA_DIR):
            return None
        return cls(
            bin_dir=Path(os.environ[ENV_BIN_DIR]),
            data_dir=Path(os.environ[ENV_DATA_DIR]),
            port=int(os.environ[ENV_PORT]),
        )

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def export(self) -> dict[str, str]:
        """Environment variables that let child processes use (and restart) this cluster."""
        return {
            "DATABASE_URL": self.url,
            ENV_BIN_DIR: str(self.bin_dir),
            ENV_DATA_DIR: str(self.data_dir),
            ENV_PORT: str(self.port),
        }

    def start(self, timeout: float = 30) -> None:
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1", f"-k {self.data_dir}"]
        if self.fast:
            options.extend(FAST_OPTIONS)
        log = self.data_dir.parent / "postgres.log"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(log),
            "-o",
            " ".join(options),
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        )
        self._wait_ready(timeout)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str = DATABASE) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def destroy(self) -> None:
        with contextlib.suppress(ClusterError):
            self.stop(mode="immediate")
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def __enter__(self) -> Cluster:
        self.start()
        self.create_database()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise ClusterError(
            f"PostgreSQL did not accept connections on port {self.port} within {timeout}s."
        )

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise ClusterError(
                f"{program} failed "
                f"({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )
