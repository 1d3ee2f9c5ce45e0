class TaskQueueError(Exception):
    """Base class of the task queue's own errors."""


class DupeKeyExc(TaskQueueError):
    """An unfinished task of this queue already has the dupe key."""


class DeserializationExc(TaskQueueError):
    """A task's stored arguments could not be decoded."""


class SerializationError(TaskQueueError, TypeError):
    """An argument cannot be stored: it does not round-trip through JSON (nothing was enqueued)."""


class Stopped(TaskQueueError):
    """Raised by a task that stops early because `stop_requested()` said so, from any front door.

    If the task was cancelled (revoked), it ends cancelled; if its worker is shutting down, it goes back
    to the queue without using up an attempt, and runs again from the start. Raised without a stop
    request, it is an error like any other.
    """
