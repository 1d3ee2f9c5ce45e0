"""Benchmark the task queue on SQLite and on a throwaway PostgreSQL 15, side by side.

    python -m scripts.bench [--runs N] [--tasks N] [--quick]

Measures enqueue rates (one per transaction, and bulk), the drain rate of no-op tasks by one and by
two real worker processes (`manage.py taskqueue_worker --threads 1`), the pickup latency of an idle
worker, a worker's memory over a long run, and what an idle worker costs. The task queue's three
front doors (queue classes, `django.tasks`, the Celery-style `shared_task`) are compared on the
one-worker drain and on single enqueues. Prints the median of each figure over the runs, its ratio
PostgreSQL/SQLite and against its target, and ends with a markdown table for the README.

Each measurement runs in a child process of its own (`--child`, Django configured for one database),
started in a session of its own, so everything it starts can be stopped through it, even on errors,
timeouts or Ctrl+C. The worker processes import the queue classes and tasks of `scripts.bench.tasks`
as one of their TASKQUEUE["TASK_MODULES"] (set through TASKQUEUE_TASK_MODULES).

The modules, orchestrator side first (none of these needs Django):

- `cli`: the command line, and which side a process is (orchestrator, measuring child, worker).
- `orchestrator`: runs each measurement in a child process, on each database, and collects results.
- `plan`: how many runs and tasks, and which measurements run in which order.
- `databases`: the SQLite file, the throwaway PostgreSQL cluster, the children's environment.
- `table`: the rows of the report and their targets; `results`: figures and medians; `report`:
  output.
- `processes`: /proc readings, stopping a child's process group, SIGTERM handling.
- `front_doors`: the three front doors, as the measurements and the table name them.
- `common`: paths, queue names, timings, BenchError.

Child side (imported only once Django is set up, by `child`):

- `child`: a measuring child's and a worker without result retention's entry point.
- `tasks`: the queue classes and tasks the workers run (a task module).
- `enqueueing`: enqueueing no-op tasks through each front door.
- `workers`: the worker processes a measurement starts, and their stopping.
- `measurements`: the measurements themselves.
"""
