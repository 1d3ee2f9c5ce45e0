"""The engine: tables in, tasks out. Enqueue, claim, record outcomes, liveness and recovery.

It knows nothing of the front doors' APIs: a task's `kind` selects the executor a front door
registered (see `executors`), and its payload is that front door's business.
"""
