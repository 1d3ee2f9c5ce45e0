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


class UnknownTaskKind(TaskQueueError):
    """A task row of a kind no front door registered (its front door's module is not imported)."""


class UndeclaredTask(TaskQueueError, LookupError):
    """A task path that no front door declared (see `taskqueue.engine.registry`): it is not imported and
    does not run; a task row naming it fails, and a recurring task naming it is refused."""


class TaskModuleError(TaskQueueError, ImportError):
    """A task module (an installed app's `tasks`, or one of TASKQUEUE["TASK_MODULES"]) failed to import:
    a worker does not start without its tasks."""
