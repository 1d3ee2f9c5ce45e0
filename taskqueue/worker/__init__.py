"""The worker: threads that claim and run tasks, grouped in a process that keeps itself alive in the
table."""
