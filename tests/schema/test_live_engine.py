"""The live engine in process: shared execution, fault isolation, the listener.

Every subscriber here goes through ``LiveEngine.run``, the path every adapter takes;
the sinks (``tests.schema.live_sinks``) record what they get and inject faults.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db import OperationalError, connection
from django.db.backends.utils import CursorWrapper
from django.test import override_settings

from backend.metrics import SUBSCRIBER_FAULTS
from events import selectors, services
from events.models import Visibility
from schema.live.engine import LiveEngine, get_engine
from schema.live.hub import read_log
from schema.live.shapes import Shape
from schema.schema import schema
from tests.schema.live_sinks import SMALL, RecordingSink, subscribe

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("close_worker_connections"),
]

FULL = """subscription Full { activity {
  cursor kind verb message actor { username email profile { bio } }
  event { id visibility ... on StatusChange { status } }
} }"""
BY_KIND = """subscription ByKind($kinds: [ActivityKind!]) { activity(kinds: $kinds) {
  cursor message actor { email } event { ... on StatusChange { status } }
} }"""
FRAGMENTS = """subscription Frag { ...Live }
fragment Live on Subscription { activity { ...Row } }
fragment Row on Activity { cursor m: message @include(if: true) }"""
SHAPES: list[tuple[str, dict[str, Any] | None]] = [
    (FULL, None),
    (BY_KIND, {"kinds": ["STATUS_CHANGE"]}),
    (SMALL, None),
    (FRAGMENTS, None),
]


class count_queries:
    """Count SQL statements run on any thread (resolvers may run in a worker thread)."""

    def __enter__(self) -> None:
        self.count = 0
        self._original = CursorWrapper._execute  # type: ignore[attr-defined]

        def counting(wrapper: CursorWrapper, *args: object, **kwargs: object) -> object:
            self.count += 1
            return self._original(wrapper, *args, **kwargs)

        CursorWrapper._execute = counting  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        CursorWrapper._execute = self._original  # type: ignore[attr-defined]


def post(actor: User, status: str, visibility: str = Visibility.PUBLIC) -> Any:
    return sync_to_async(services.status_change_create)(
        actor=actor, status=status, visibility=visibility
    )


async def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def executions(engine: LiveEngine) -> int:
    return sum(shape.executions for shape in engine.shapes.values())


async def end_all(engine: LiveEngine) -> None:
    for shape in list(engine.shapes.values()):
        for group in list(shape.viewers.values()):
            for subscriber in list(group):
                engine.end(subscriber)


async def test_executions_and_queries_do_not_grow_with_subscribers(
    make_user: Callable[..., User],
) -> None:
    alice, bob = (
        await database_sync_to_async(make_user)("alice"),
        await database_sync_to_async(make_user)("bob"),
    )
    engine = get_engine(schema)
    viewers = [None, bob, alice]
    measured: dict[int, tuple[int, int]] = {}
    sinks: list[tuple[int, User | None, RecordingSink]] = []
    for size in (30, 600):
        sinks = []
        for n in range(size):
            query, variables = SHAPES[n % len(SHAPES)]
            viewer = viewers[(n // len(SHAPES)) % len(viewers)]
            sink = RecordingSink(name=str(n))
            assert await subscribe(engine, sink, query, variables, viewer) is not None
            sinks.append((n, viewer, sink))
        before = executions(engine)
        queries = count_queries()
        with queries:
            await post(alice, "hello world")
            await post(alice, "secret plan", Visibility.PRIVATE)
            latest = await sync_to_async(selectors.latest_activity_id)()
            await eventually(lambda: engine.listener.delivered_id == latest)  # noqa: B023
            await eventually(lambda: all(s.positions for _, _, s in sinks))  # noqa: B023
        measured[size] = (executions(engine) - before, queries.count)
        if size == 30:
            await end_all(engine)
    (small_runs, _), (large_runs, _) = measured[30], measured[600]
    assert large_runs == small_runs
    assert large_runs == (3 + 1) * len(SHAPES)  # public: 3 audiences, private: its actor
    for n, viewer, sink in sinks:
        text = str(sink.payloads)
        if viewer != alice:
            assert "secret plan" not in text, n
            assert "alice@example.com" not in text, n
        assert sink.positions == sorted(sink.positions)
    alice_text = str([s.payloads for _, v, s in sinks if v == alice])
    assert "secret plan" in alice_text and "alice@example.com" in alice_text
    await end_all(engine)


async def test_a_faulty_subscriber_is_ended_alone_and_everyone_else_gets_everything(
    make_user: Callable[..., User],
) -> None:
    alice = await database_sync_to_async(make_user)("alice")
    engine = get_engine(schema)
    healthy = [RecordingSink(name=f"healthy{n}") for n in range(100)]
    for n, sink in enumerate(healthy):  # two shapes, one shared with the faulty ones
        await subscribe(engine, sink, SMALL if n % 2 else FRAGMENTS)
    write_fails = RecordingSink(name="write", fail_writes=True)
    gone = RecordingSink(name="gone")
    adapter_fails = RecordingSink(name="adapter", fail_encoding=True, encoding="own")
    for sink in (write_fails, gone, adapter_fails):
        await subscribe(engine, sink, SMALL)
    gone.open = False
    faults = {
        reason: SUBSCRIBER_FAULTS.labels(reason=reason)._value.get()
        for reason in ("write", "gone", "adapter")
    }  # type: ignore[attr-defined]
    for n in range(5):
        await post(alice, f"status {n}")
    await eventually(lambda: all(len(s.positions) == 5 for s in healthy))
    for sink in healthy:
        messages = [
            p["data"]["activity"].get("message") or p["data"]["activity"]["m"]
            for p in sink.payloads
        ]
        assert [m.rsplit(" ", 1)[-1] for m in messages] == ["0'", "1'", "2'", "3'", "4'"]
    assert engine.count == 100
    await eventually(lambda: write_fails.aborted)
    assert write_fails.errors and write_fails.errors[0][0]["extensions"]["code"] == "INTERNAL"
    assert adapter_fails.errors and not adapter_fails.aborted
    assert gone.errors == [] and gone.positions == []
    for reason in ("write", "gone", "adapter"):
        assert SUBSCRIBER_FAULTS.labels(reason=reason)._value.get() == faults[reason] + 1  # type: ignore[attr-defined]
    await end_all(engine)


async def test_a_shape_whose_execution_raises_ends_its_subscribers_only(
    make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await database_sync_to_async(make_user)("alice")
    engine = get_engine(schema)
    doomed = [RecordingSink(name=f"doomed{n}") for n in range(3)]
    healthy = [RecordingSink(name=f"healthy{n}") for n in range(100)]
    for sink in doomed:
        await subscribe(engine, sink, FULL)
    for sink in healthy:
        await subscribe(engine, sink, SMALL)
    execute = Shape.execute

    async def broken(self: Shape, *args: Any) -> bytes:
        if self.query == FULL:
            raise RuntimeError("a resolver bug")
        return await execute(self, *args)

    monkeypatch.setattr(Shape, "execute", broken)
    await post(alice, "first")
    await post(alice, "second")
    await eventually(lambda: all(len(s.positions) == 2 for s in healthy))
    await eventually(lambda: all(s.errors for s in doomed))
    for sink in doomed:
        assert sink.errors[0][0]["extensions"]["code"] == "INTERNAL"
        assert sink.positions == []
    assert len(engine.shapes) == 1 and engine.count == 100
    await end_all(engine)


async def test_the_listener_moves_on_past_a_batch_whose_delivery_raised(
    make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await database_sync_to_async(make_user)("alice")
    engine = get_engine(schema)
    sink = RecordingSink()
    await subscribe(engine, sink, SMALL)
    deliver, calls = engine.deliver, []

    async def fails_once(rows: Any, log: Any) -> None:
        calls.append(len(rows))
        if len(calls) == 1:
            raise RuntimeError("isolation itself failed")
        await deliver(rows, log)

    monkeypatch.setattr(engine, "deliver", fails_once)
    await post(alice, "lost to the fault")
    await eventually(lambda: len(calls) == 1)
    await post(alice, "after it")
    await eventually(lambda: len(sink.positions) == 1)
    assert sink.messages()[0].endswith("'after it'")
    assert engine.listener.delivered_id == sink.positions[0]
    await end_all(engine)


async def test_replay_then_live_with_no_gap_and_no_duplicate(
    make_user: Callable[..., User],
) -> None:
    alice = await database_sync_to_async(make_user)("alice")
    engine = get_engine(schema)
    for n in range(3):
        await post(alice, f"old {n}")
    sink = RecordingSink()
    query = "subscription($after: String) { activity(after: $after) { cursor message } }"
    subscriber = await subscribe(engine, sink, query, {"after": None})
    assert subscriber is not None and sink.positions == []  # null after: live only
    engine.end(subscriber)
    replaying = RecordingSink()
    cursor = "YWN0aXZpdHk6MA=="  # activity 0: the whole log
    await subscribe(engine, replaying, query, {"after": cursor})
    await post(alice, "new")
    await eventually(lambda: len(replaying.positions) == 5)  # alice joined, 3 old, 1 new
    assert replaying.positions == sorted(set(replaying.positions))
    assert replaying.messages()[-1].endswith("'new'")
    await end_all(engine)


async def test_invalid_and_non_live_operations_never_join_the_engine() -> None:
    engine = get_engine(schema)
    sink = RecordingSink()
    assert await subscribe(engine, sink, "subscription { activity { nope } }") is None
    assert sink.rejected and sink.rejected[0].errors
    bad_cursor = RecordingSink()
    query = 'subscription { activity(after: "not a cursor") { cursor } }'
    assert await subscribe(engine, bad_cursor, query) is None
    assert bad_cursor.results[0].errors
    assert bad_cursor.results[0].errors[0].extensions == {  # type: ignore[index]
        "code": "BAD_USER_INPUT",
        "fields": {"after": ["Invalid cursor."]},
    }
    query_sink = RecordingSink()
    assert await subscribe(engine, query_sink, "{ me { id } }") is None
    assert query_sink.results[0].data == {"me": None} and query_sink.completed
    assert engine.count == 0


@override_settings(PULSE_FANOUT_WINDOW_SECONDS=0.3)
async def test_a_stream_of_activities_is_fanned_out_in_batches(
    make_user: Callable[..., User], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await database_sync_to_async(make_user)("alice")
    engine = get_engine(schema)
    batches: list[int] = []
    deliver = engine.deliver

    async def recording(rows: Any, log: Any) -> None:
        batches.append(len(rows))
        await deliver(rows, log)

    monkeypatch.setattr(engine, "deliver", recording)
    sink = RecordingSink()
    await subscribe(engine, sink, SMALL)
    await post(alice, "alone")
    await eventually(lambda: len(sink.positions) == 1)
    assert batches == [1]  # after a quiet spell: at once, by itself
    for n in range(10):  # further apart than a catch-up takes, closer than the window
        await post(alice, f"stream {n}")
        await asyncio.sleep(0.03)
    await eventually(lambda: len(sink.positions) == 11)
    assert sum(batches) == 11
    assert len(batches) < 11  # the stream went out in fewer, larger batches
    assert sink.writes < 11  # and each batch in one write
    await end_all(engine)


async def test_reads_share_one_connection_and_an_error_replaces_it() -> None:
    def connection_id() -> int | None:
        return id(connection.connection) if connection.connection is not None else None

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
