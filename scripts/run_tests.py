"""Run the whole test suite twice: on SQLite, then on a real PostgreSQL 15.

    python -m scripts.run_tests [pytest arguments]

For the PostgreSQL run it starts a throwaway cluster (see pgcluster.py) and stops it afterwards,
unless DATABASE_URL already points at a PostgreSQL server, which is then used as it is. Where no
PostgreSQL binaries exist it says so and runs the SQLite pass only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from scripts.pgcluster import DEFAULT_BIN_DIR, Cluster, ClusterError, binaries_available

CHROMIUM = Path("/usr/bin/chromium")

PROJECT = Path(__file__).resolve().parent.parent


def pytest(label: str, extra_env: dict[str, str], args: list[str]) -> int:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"} | extra_env
    print(f"\n===== Test suite on {label} =====", flush=True)
    return subprocess.run([sys.executable, "-m", "pytest", *args], cwd=PROJECT, env=env).returncode


def ensure_chromium() -> None:
    """Browser tests drive Debian's chromium; install it where we may (root with apt-get)."""
    if CHROMIUM.exists():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print(
            f"NOTE: no chromium at {CHROMIUM} and no way to install it; browser tests will be "
            "skipped."
        )
        return
    print("Installing Debian's chromium for the browser tests ...", flush=True)
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        if subprocess.run(command, env=env, capture_output=True, timeout=600).returncode != 0:
            print("NOTE: installing chromium failed; browser tests will be skipped.")
            return


def main(args: list[str]) -> int:
    ensure_chromium()
    given_url = os.environ.get("DATABASE_URL", "")
    results = {"SQLite": pytest("SQLite", {}, args)}
    if given_url.startswith(("postgres://", "postgresql://")):
        results["PostgreSQL (DATABASE_URL)"] = pytest(
            "PostgreSQL from DATABASE_URL", {"DATABASE_URL": given_url}, args
        )
    elif binaries_available():
        try:
            with Cluster.create() as cluster:
                results["PostgreSQL 15"] = pytest(
                    f"PostgreSQL 15 (throwaway cluster, port {cluster.port})",
                    cluster.export(),
                    args,
                )
        except ClusterError as error:
            print(f"\nCould not start the throwaway PostgreSQL cluster: {error}", file=sys.stderr)
            results["PostgreSQL 15"] = 1
    else:
        print(
            f"\nNOTE: no PostgreSQL binaries in {DEFAULT_BIN_DIR}; the PostgreSQL pass is "
            "skipped and only "
            "SQLite was tested. Install postgresql-15 or set DATABASE_URL to a PostgreSQL server.",
            file=sys.stderr,
        )
    print("\n===== Summary =====")
    for label, code in results.items():
        print(f"{label}: {'passed' if code == 0 else f'FAILED (pytest exit {code})'}")
    return 0 if all(code == 0 for code in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
