"""Pulse's SQLite backend keeps closed connections for the next request's thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from backend.db.sqlite3.base import IDLE_CONNECTIONS, DatabaseWrapper


@pytest.fixture(autouse=True)
def own_databases(django_db_blocker: Any) -> Any:
    """These tests open their own database files, not the test database."""
    with django_db_blocker.unblock():
        yield


def wrapper(path: Path) -> DatabaseWrapper:
    settings: dict[str, Any] = {
        "ENGINE": "backend.db.sqlite3",
        "NAME": str(path),
        "OPTIONS": {"timeout": 5, "transaction_mode": "IMMEDIATE"},
        "ATOMIC_REQUESTS": False,
        "AUTOCOMMIT": True,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "TIME_ZONE": None,
        "TEST": {},
        "USER": "",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
    }
    return DatabaseWrapper(settings)


def in_a_thread(path: Path, work: Any) -> Any:
    """Connect in a new thread (as each ASGI request does), run ``work``, close."""
    found: list[Any] = []

    def run() -> None:
        db = wrapper(path)
        db.ensure_connection()
        found.append(work(db))
        db.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return found[0]


def test_a_closed_connection_serves_the_next_thread(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    sqlite3.connect(path).close()
    first = in_a_thread(path, lambda db: db.connection)
    second = in_a_thread(path, lambda db: db.connection)
    assert second is first
    assert in_a_thread(path, lambda db: db.cursor().execute("SELECT 1").fetchone()) == (1,)


def test_an_open_transaction_is_rolled_back_when_put_back(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (x INTEGER)")

    def leave_a_transaction_open(db: DatabaseWrapper) -> bool:
        db.connection.execute("BEGIN")
        db.connection.execute("INSERT INTO t VALUES (1)")
        return bool(db.connection.in_transaction)

    assert in_a_thread(path, leave_a_transaction_open)
    assert in_a_thread(path, lambda db: db.connection.in_transaction) is False
    assert in_a_thread(
        path, lambda db: db.cursor().execute("SELECT count(*) FROM t").fetchone()
    ) == (0,)


def test_a_database_made_anew_gets_new_connections(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    sqlite3.connect(path).close()
    first = in_a_thread(path, lambda db: db.connection)
    path.unlink()
    with sqlite3.connect(path) as fresh:
        fresh.execute("CREATE TABLE fresh (x INTEGER)")
    second = in_a_thread(path, lambda db: db.connection)
    assert second is not first
    tables = in_a_thread(
        path, lambda db: db.connection.execute("SELECT name FROM sqlite_master").fetchall()
    )
    assert tables == [("fresh",)]


def test_at_most_idle_connections_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    sqlite3.connect(path).close()
    opened = [wrapper(path) for _ in range(IDLE_CONNECTIONS + 3)]
    for db in opened:
        db.ensure_connection()
    connections = [db.connection for db in opened]
    for db in opened:
        db.close()
    with pytest.raises(sqlite3.ProgrammingError):  # closed: no room for it
        connections[-1].execute("SELECT 1")
    assert connections[0].execute("SELECT 1").fetchone() == (1,)  # kept
