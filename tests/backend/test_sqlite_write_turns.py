"""Pulse's SQLite backend: a process's write transactions queue for their turn."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections, transaction

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def write_turn() -> threading.Lock:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    from backend.db.sqlite3.base import _write_turn

    return _write_turn


def test_concurrent_writers_all_commit_and_the_turn_is_released(
    write_turn: threading.Lock,
) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(5):
                with transaction.atomic():
                    User.objects.create(username=f"writer-{n}-{i}")
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert User.objects.filter(username__startswith="writer-").count() == 40
    assert not write_turn.locked()


def test_a_rolled_back_transaction_gives_the_turn_back(write_turn: threading.Lock) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        User.objects.create(username="rolled-back")
        assert write_turn.locked()
        raise RuntimeError
    assert not write_turn.locked()
    assert not User.objects.filter(username="rolled-back").exists()
    with transaction.atomic():  # and the next writer gets it
        User.objects.create(username="next")
    assert not write_turn.locked()
