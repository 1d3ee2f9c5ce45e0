"""The chaos suite's quick form (`python -m scripts.chaos --quick`) on this run's database.

Real worker processes under a kill storm, SIGSTOP, SIGTERM to a `--processes 2` parent, poison rows
and schedules, and on PostgreSQL terminated backends and restarts; every invariant is judged from
what the tasks recorded (see scripts/chaos.py). `make chaos` runs the full form on both databases.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import connection, connections

from scripts.pgcluster import Cluster, binaries_available
from tests.conftest import PROJECT

pytestmark = pytest.mark.slow

# The quick form works about 60-90 s per database; its own deadline is 200 s (scripts/chaos.py).
TIMEOUT = 290


@pytest.mark.timeout(TIMEOUT + 10)
def test_the_quick_chaos_run_holds_every_invariant() -> None:
    database = "postgresql" if connection.vendor == "postgresql" else "sqlite"
    if database == "postgresql" and Cluster.attached() is None and not binaries_available():
        pytest.skip("no PostgreSQL cluster this run may restart, and no binaries to start one")
    for (
        each
    ) in connections.all():  # the run restarts the PostgreSQL cluster: no connection of ours in it
        each.close()
    command = [sys.executable, "-m", "scripts.chaos", "--quick", "--database", database]
    try:
        result = subprocess.run(
            command,
            cwd=PROJECT,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    finally:
        for each in connections.all():
            each.close()
    output = result.stdout + result.stderr
    assert result.returncode == 0, "the chaos run failed an invariant:\n" + output[-20000:]
