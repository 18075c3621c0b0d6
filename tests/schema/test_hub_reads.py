"""The listener keeps one database connection, and replaces it after a database error."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError, connection

from events import selectors
from schema.hub import read_log

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("close_worker_connections"),
]


def connection_id() -> int | None:
    """Identity of the worker thread's open database connection, if any."""
    return id(connection.connection) if connection.connection is not None else None


async def test_reads_share_one_connection_and_an_error_replaces_it() -> None:
    await read_log(selectors.latest_activity_id)
    first = await sync_to_async(connection_id)()
    await read_log(selectors.latest_activity_id)
    assert await sync_to_async(connection_id)() == first is not None

    def broken() -> int:
        raise OperationalError("server closed the connection unexpectedly")

    with pytest.raises(OperationalError):
        await read_log(broken)
    # Closed, so the next read reconnects (Django keeps SQLite's in-memory test database).
    in_memory = connection.vendor == "sqlite" and connection.is_in_memory_db()  # type: ignore[attr-defined]
    assert await sync_to_async(connection_id)() == (first if in_memory else None)
    assert await read_log(selectors.latest_activity_id) == 0
    assert await sync_to_async(connection_id)() is not None
