"""Tasks that take any arguments, one per front door: the payload-limit and status tests enqueue
them."""

from __future__ import annotations

from typing import Any

from django.tasks import task

from taskqueue import BaseQueue, TaskInfo
from taskqueue.celery import shared_task


class EchoQueue(BaseQueue[object]):
    queue_name = "echo"

    @classmethod
    def process(cls, task_info: TaskInfo[object]) -> None:
        task_info.get_arg()


@task(queue_name="echo")
def echo(*args: Any, **kwargs: Any) -> list[Any]:
    return [args, kwargs]


@shared_task(queue="echo")
def celery_echo(*args: Any, **kwargs: Any) -> list[Any]:
    return [args, kwargs]
