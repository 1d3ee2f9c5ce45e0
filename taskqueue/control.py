"""Queue control for operators and code: how big and how late a queue is; pause, resume, clear.

from taskqueue import QueueInfo

email = QueueInfo("email")
email.size, email.latency, email.paused
email.pause(); email.resume(); email.clear()
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import router
from django.db.models import Min
from django.utils import timezone

from taskqueue.models import PausedQueue, Status, Task


@dataclass(frozen=True)
class QueueInfo:
    name: str

    @property
    def _using(self) -> str:
        return router.db_for_write(Task)

    def _waiting(self):
        return Task.objects.using(self._using).filter(queue_name=self.name, status=Status.READY)

    @property
    def size(self) -> int:
        """Tasks waiting to run, scheduled ones included."""
        return self._waiting().count()

    @property
    def latency(self) -> timedelta:
        """How long the oldest task that is due has been waiting (zero when none is)."""
        now = timezone.now()
        oldest = self._waiting().filter(run_at__lte=now).aggregate(oldest=Min("run_at"))["oldest"]
        return now - oldest if oldest else timedelta(0)

    @property
    def paused(self) -> bool:
        return PausedQueue.objects.using(self._using).filter(name=self.name).exists()

    def pause(self) -> None:
        """Workers claim nothing from this queue until it is resumed; running tasks finish."""
        PausedQueue.objects.using(self._using).get_or_create(
            name=self.name, defaults={"paused_at": timezone.now()}
        )

    def resume(self) -> None:
        PausedQueue.objects.using(self._using).filter(name=self.name).delete()

    def clear(self) -> int:
        """Delete the queue's waiting tasks (not running or finished ones). Returns how many."""
        deleted, _ = self._waiting().delete()
        return deleted


def queue_names() -> list[str]:
    """Queues with waiting or running tasks, and paused ones."""
    using = router.db_for_write(Task)
    active = Task.objects.using(using).filter(status__in=[Status.READY, Status.RUNNING])
    names = set(active.values_list("queue_name", flat=True).distinct())
    names.update(PausedQueue.objects.using(using).values_list("name", flat=True))
    return sorted(names)
