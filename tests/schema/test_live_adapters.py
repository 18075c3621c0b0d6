"""The graphql-transport-ws adapter over the live engine, in process.

A live subscription is only an entry in its shape: these tests show it is removed by
``complete`` and by the socket closing, that its start-up task ends once it is live,
and that subscribers differing only in ``after`` share one shape.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from asgi import application
from events import services
from events.models import Visibility
from schema.ids import encode_activity_cursor
from schema.live.engine import get_engine
from schema.schema import schema

pytestmark = pytest.mark.django_db(transaction=True)

STATUSES = """subscription Statuses($after: String) {
  activity(after: $after, kinds: [STATUS_CHANGE]) { cursor message }
}"""


class Socket:
    """A graphql-transport-ws client over Channels' in-process communicator."""

    def __init__(self) -> None:
        self.communicator = WebsocketCommunicator(
            application, "/graphql/", subprotocols=["graphql-transport-ws"]
        )

    async def open(self) -> Socket:
        connected, _ = await self.communicator.connect()
        assert connected
        await self.send({"type": "connection_init", "payload": {}})
        assert (await self.receive())["type"] == "connection_ack"
        return self

    async def send(self, message: dict[str, Any]) -> None:
        await self.communicator.send_to(text_data=json.dumps(message))

    async def receive(self, timeout: float = 5) -> dict[str, Any]:
        return json.loads(await self.communicator.receive_from(timeout))

    async def subscribe(self, id: str, variables: dict[str, Any] | None = None) -> None:
        payload = {"query": STATUSES, "variables": variables or {}}
        await self.send({"id": id, "type": "subscribe", "payload": payload})

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
async def socket() -> AsyncIterator[Socket]:
    opened = await Socket().open()
    yield opened
    await opened.close()


async def eventually(check: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def post(actor: User, status: str) -> Any:
    return sync_to_async(services.status_change_create)(
        actor=actor, status=status, visibility=Visibility.PUBLIC
    )


async def test_complete_and_close_leave_nothing_in_the_fan_out(
    socket: Socket, make_user: Callable[..., User]
) -> None:
    alice = await sync_to_async(make_user)("alice")
    engine = get_engine(schema)
    await socket.subscribe("a")
    await socket.subscribe("b")
    await eventually(lambda: engine.count == 2)

    await post(alice, "first")
    received = {(await socket.receive())["id"] for _ in range(2)}
    assert received == {"a", "b"}

    await socket.send({"id": "a", "type": "complete"})
    await eventually(lambda: engine.count == 1)
    await post(alice, "second")
    frame = await socket.receive()
    assert frame["id"] == "b"
    assert frame["payload"]["data"]["activity"]["message"].endswith("'second'")
    assert await socket.communicator.receive_nothing(0.2)

    await socket.subscribe("a")  # the id is free again
    await eventually(lambda: engine.count == 2)
    await socket.close()
    await eventually(lambda: engine.count == 0)
    assert engine.shapes == {}


async def test_a_live_subscription_keeps_no_task(
    socket: Socket, make_user: Callable[..., User]
) -> None:
    engine = get_engine(schema)
    await socket.subscribe("1")
    await eventually(lambda: engine.count == 1)
    (shape,) = engine.shapes.values()
    ((subscription,),) = shape.viewers.values()
    await eventually(lambda: subscription.live)
    await asyncio.sleep(0)
    current = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    names = [t.get_coro().__qualname__ for t in others]  # type: ignore[union-attr]
    assert not any("TransportWSOperation.run" in name for name in names), names
    assert subscription.pending is None


async def test_subscribers_differing_only_in_after_share_one_shape(
    make_user: Callable[..., User],
) -> None:
    alice = await sync_to_async(make_user)("alice")
    first = await post(alice, "one")
    await post(alice, "two")
    engine = get_engine(schema)
    from events.models import Activity

    first_id = await sync_to_async(
        lambda: Activity.objects.get(event_pk=first.pk, verb="CREATED").pk
    )()
    sockets = [await Socket().open() for _ in range(3)]
    try:
        await sockets[0].subscribe("1")
        await sockets[1].subscribe("1", {"after": encode_activity_cursor(0)})
        await sockets[2].subscribe("1", {"after": encode_activity_cursor(first_id)})
        replayed = [
            [
                (await sockets[1].receive())["payload"]["data"]["activity"]["message"]
                for _ in range(2)
            ],
            [(await sockets[2].receive())["payload"]["data"]["activity"]["message"]],
        ]
        assert [len(r) for r in replayed] == [2, 1]
        assert replayed[1][0].endswith("'two'")
        await eventually(lambda: engine.count == 3)
        assert len(engine.shapes) == 1

        await post(alice, "three")
        for s in sockets:
            frame = await s.receive()
            assert frame["payload"]["data"]["activity"]["message"].endswith("'three'")
        assert all([await s.communicator.receive_nothing(0.1) for s in sockets])
    finally:
        for s in sockets:
            await s.close()


async def test_only_a_variable_feeding_after_alone_is_left_out_of_the_shape() -> None:
    engine = get_engine(schema)
    # The same document but for a comment naming $after: it may not share (a use the
    # key cannot rule out costs sharing, never correctness).
    mentioned = STATUSES.replace("{\n", "{ # resumes at $after\n", 1)
    sockets = [await Socket().open() for _ in range(4)]
    try:
        for n, query in enumerate([STATUSES, STATUSES, mentioned, mentioned]):
            payload = {"query": query, "variables": {"after": encode_activity_cursor(n)}}
            await sockets[n].send({"id": "1", "type": "subscribe", "payload": payload})
        await eventually(lambda: engine.count == 4)
        sizes = sorted(
            sum(len(group) for group in shape.viewers.values()) for shape in engine.shapes.values()
        )
        assert sizes == [1, 1, 2]
    finally:
        for s in sockets:
            await s.close()
    await eventually(lambda: engine.count == 0)
    assert engine.shapes == {}


def handler_tasks() -> list[asyncio.Task[Any]]:
    """strawberry's per-socket handler tasks (``AsyncBaseHTTPView.run``) still running."""
    return [
        task
        for task in asyncio.all_tasks()
        if "AsyncBaseHTTPView.run" in repr(task.get_coro()) and not task.done()
    ]


async def test_a_cancelled_socket_ends_its_handler_task() -> None:
    """daphne cancels what still runs at shutdown: the socket's own handler task must end
    with it, not be left pending and destroyed with the loop."""
    socket = await Socket().open()
    await socket.subscribe("1")
    await eventually(lambda: len(handler_tasks()) == 1)
    socket.communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await socket.communicator.future
    await eventually(lambda: handler_tasks() == [])
