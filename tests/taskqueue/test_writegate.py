"""The SQLite write gate: worker writes queue on a file lock, taken outside any open transaction."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from taskqueue.engine.databases.sqlite import gate

pytestmark = pytest.mark.django_db(transaction=True)


def file_backed_sqlite() -> None:
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        pytest.skip("the gate is for SQLite databases in a file")


def test_a_second_writer_waits_for_the_gate_and_goes_the_moment_it_is_released() -> None:
    file_backed_sqlite()
    holding, entered = threading.Event(), threading.Event()
    released_at: list[float] = []

    def second() -> None:
        holding.wait(10)
        with gate(connection):
            entered.set()
            released_at.append(time.monotonic())

    other = threading.Thread(target=second)
    other.start()
    with gate(connection):
        holding.set()
        assert not entered.wait(0.5), "the second writer went in while the gate was held"
        let_go = time.monotonic()
    other.join(10)
    assert entered.is_set() and released_at[0] - let_go < 0.1, (
        "woken at the release, not at a later poll"
    )


def test_inside_an_open_transaction_the_gate_is_not_taken() -> None:
    """The transaction may hold SQLite's lock already; waiting for the gate then could deadlock."""
    file_backed_sqlite()
    outside = threading.Event()

    def holder() -> None:
        with gate(connection):
            outside.set()
            time.sleep(1.0)

    other = threading.Thread(target=holder)
    other.start()
    outside.wait(10)
    started = time.monotonic()
    with transaction.atomic(), gate(connection):
        waited = time.monotonic() - started
    other.join(10)
    assert waited < 0.5
