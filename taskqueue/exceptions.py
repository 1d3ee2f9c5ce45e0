class TaskQueueError(Exception):
    """Base class of the task queue's own errors."""


class DupeKeyExc(TaskQueueError):
    """An unfinished task of this queue already has the dupe key."""


class DeserializationExc(TaskQueueError):
    """A task's stored arguments could not be decoded."""


class SerializationError(TaskQueueError, TypeError):
    """An argument cannot be stored: it does not round-trip through JSON (nothing was enqueued)."""
