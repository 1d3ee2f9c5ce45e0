"""Run in two processes at once by the dupe-key race test: both add the same keys, one after the
other."""

import os
import sys
import time
from pathlib import Path

from taskqueue import DupeKeyExc
from tests.taskqueue.sample_queues import NoOpQueue


def main() -> None:
    start = Path(os.environ["RACE_START_FILE"])
    while not start.exists():
        time.sleep(0.001)
    won = 0
    for key in range(int(os.environ["RACE_KEYS"])):
        try:
            NoOpQueue.add_task(None, dupe_key=f"key-{key}")
            won += 1
        except DupeKeyExc:
            pass
    sys.stdout.write(f"won {won}\n")
