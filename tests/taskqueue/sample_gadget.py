"""A module that is importable but declares no task to the queue (it is no task module): what a row
or a schedule could name to run import-time code. Importing it records `gadget imported <pid>`;
calling `run` records `gadget ran`. Tests prove that neither happens."""

from __future__ import annotations

import os

from tests.taskqueue.sample_queues import record

record(f"gadget imported {os.getpid()}")


def run(*args: object, **kwargs: object) -> None:
    record("gadget ran")


class Process:
    """Shaped like a queue class, without being one."""

    @classmethod
    def process(cls, task_info: object) -> None:
        record("gadget ran")
