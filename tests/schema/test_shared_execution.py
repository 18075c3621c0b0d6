"""Shared execution: work per activity grows with shapes, not with subscribers."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.db.backends.utils import CursorWrapper
from graphql import parse

from events import selectors
from events.models import StatusChange, Visibility
from schema.events import parse_activity_cursor
from schema.filters import ActivityFilter
from schema.live import Shape, SharedFanout, SharedSubscription
from schema.schema import schema
from tests.helpers import split_text_frames

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
SMALL = "subscription { activity { cursor message } }"
SHAPES = [(FULL, None), (BY_KIND, {"kinds": ["STATUS_CHANGE"]}), (SMALL, None)]


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


def make_shape(query: str, variables: dict | None) -> Shape:
    kinds = frozenset(variables["kinds"]) if variables else None
    return Shape(
        json.dumps([query, variables]),
        schema._schema,
        parse(query),
        None,
        variables,
        ActivityFilter(viewer_id=None, kinds=kinds),
    )


async def fan_out(subscribers: int, viewers: list[int | None]) -> tuple[SharedFanout, dict, int]:
    """Deliver the whole log to ``subscribers`` subscriptions spread over 3 shapes."""
    fanout = SharedFanout()
    shapes = [make_shape(q, v) for q, v in SHAPES]
    frames: dict[int, list[tuple[int | None, str]]] = {n: [] for n in range(subscribers)}

    def sink(n: int, viewer: int | None) -> Callable:
        async def send_text(text: str) -> None:
            frames[n].append((viewer, text))

        return send_text

    def frame_sink(n: int, viewer: int | None) -> Callable:
        def write_frames(encoded: bytes) -> None:
            for payload in split_text_frames(encoded):
                frames[n].append((viewer, payload.decode()))

        return write_frames

    for n in range(subscribers):
        viewer = viewers[(n // len(SHAPES)) % len(viewers)]  # every shape x every viewer
        fanout.add(
            SharedSubscription(
                shape=shapes[n % len(shapes)],
                viewer_id=viewer,
                frame_prefix=f'{{"id":"{n % 7}","type":"next","payload":'.encode(),
                send_text=sink(n, viewer),
                # Half write pre-encoded frames (Pulse's server), half ASGI messages.
                write_frames=frame_sink(n, viewer) if n % 2 else None,
                live=True,
            )
        )
    rows = await database_sync_to_async(selectors.log_after)(after_id=0, limit=100)
    queries = count_queries()
    with queries:
        await fanout.deliver(rows[:1])
        await fanout.deliver(rows[1:])  # a batch: one write per subscriber
    return fanout, frames, queries.count


async def test_executions_and_queries_do_not_grow_with_subscribers(
    make_user: Callable[..., User],
) -> None:
    alice, bob = (
        await database_sync_to_async(make_user)("alice"),
        await database_sync_to_async(make_user)("bob"),
    )
    await database_sync_to_async(StatusChange.objects.create)(actor=alice, status="hello world")
    await database_sync_to_async(StatusChange.objects.create)(
        actor=alice, status="secret plan", visibility=Visibility.PRIVATE
    )
    viewers = [None, bob.pk, alice.pk]

    small, _, small_queries = await fan_out(30, viewers)
    large, frames, large_queries = await fan_out(1000, viewers)

    def executions(fanout: SharedFanout) -> int:
        return sum(shape.executions for shape in fanout.shapes.values())

    assert executions(large) == executions(small)
    assert large_queries == small_queries
    # 4 activities (2 joins, 2 statuses): at most 3 viewer classes x 3 shapes each.
    assert executions(large) <= 4 * 3 * 3
    assert sum(len(f) for f in frames.values()) > 1000

    for n, received in frames.items():
        for viewer, text in received:
            frame = json.loads(text)
            assert frame["id"] == str(n % 7)
            activity = frame["payload"]["data"]["activity"]
            if viewer != alice.pk:
                assert "secret plan" not in text
                assert "alice@example.com" not in text
            own = viewer == alice.pk and activity["message"].startswith("alice")
            if own and "email" in activity.get("actor", {}):
                assert activity["actor"]["email"] == "alice@example.com"
    # Pre-encoded frames and ASGI messages carry the same messages, in cursor order.
    by_audience: dict[tuple[int, int | None], list[list[str]]] = {}
    for n, received in frames.items():
        viewer = viewers[(n // len(SHAPES)) % len(viewers)]
        payloads = [json.dumps(json.loads(text)["payload"]) for _, text in received]
        by_audience.setdefault((n % len(SHAPES), viewer), []).append(payloads)
    for (shape_index, viewer), lists in by_audience.items():
        assert all(payloads == lists[0] for payloads in lists), (shape_index, viewer)
        cursors = [json.loads(p)["data"]["activity"].get("cursor") for p in lists[0]]
        if None not in cursors:
            ids = [parse_activity_cursor(cursor) for cursor in cursors]
            assert ids == sorted(ids)
    alice_frames = [t for f in frames.values() for v, t in f if v == alice.pk]
    assert any("secret plan" in t for t in alice_frames)
    assert any("alice@example.com" in t for t in alice_frames)
    bob_frames = [t for f in frames.values() for v, t in f if v == bob.pk]
    assert any("bob@example.com" in t for t in bob_frames)  # his own join: he is its author
