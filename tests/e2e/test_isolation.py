"""One bad subscriber harms no one else, against a real daphne with real sockets.

100 healthy clients (both subprotocols) subscribe beside a client that resets its TCP
connection in the middle of a fan-out and one that stops reading; every healthy client
must receive every activity, in order.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.clients import (
    TRANSPORT_WS,
    WSClient,
    ahttp_gql,
    sign_up,
    subscriptions_active,
    until_subscribed,
)
from tests.e2e.servers import LOOPBACK, daphne_server
from tests.e2e.test_faults import _publish_burst

pytestmark = pytest.mark.e2e

ACTIVITY = "subscription { activity { cursor message } }"
LEGACY_WS = "graphql-ws"
HEALTHY = 100
COUNT = 300


async def raw_subscriber(base: str, port: int, receive_buffer: int) -> tuple[socket.socket, object]:
    """A graphql-transport-ws client on a socket of our own, subscribed to ``activity``."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    raw.connect((LOOPBACK, port))
    ws = await connect(
        base.replace("http", "ws", 1) + "/graphql/",
        sock=raw,
        subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
        max_queue=1,
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    payload = {"query": ACTIVITY, "variables": {}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    return raw, ws


async def test_a_reset_and_a_stalled_client_harm_none_of_100_healthy_ones(tmp_path: Path) -> None:
    env = {"PULSE_WS_MAX_UNSENT_BYTES": str(64 * 1024)}
    with daphne_server(tmp_path, env=env) as server:
        await asyncio.to_thread(sign_up, server.base, "burst")
        healthy = [
            await WSClient.open(server.base, TRANSPORT_WS if n % 2 else LEGACY_WS)
            for n in range(HEALTHY)
        ]
        active = await subscriptions_active(server.base)
        for n, client in enumerate(healthy):
            await client.subscribe(str(n), ACTIVITY)
        resetting_socket, resetting = await raw_subscriber(server.base, server.port, 4096)
        _stalled_socket, stalled = await raw_subscriber(server.base, server.port, 4096)
        await until_subscribed(server.base, active + HEALTHY + 2)  # every one is live

        burst = asyncio.create_task(asyncio.to_thread(_publish_burst, server, COUNT, 1000))
        # The resetting client reads its first activity, then resets the connection (RST,
        # not a close handshake) while the fan-out is still writing to it.
        json.loads(await asyncio.wait_for(resetting.recv(), 30))  # type: ignore[attr-defined]
        resetting_socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        resetting_socket.close()

        async def receive_all(client: WSClient) -> list[str]:
            return [
                (await client.next_data(timeout=60))["activity"]["message"] for _ in range(COUNT)
            ]

        received = await asyncio.gather(*(receive_all(client) for client in healthy))
        await burst
        expected = [f"{n:06d} " + "x" * 1000 for n in range(COUNT)]
        for messages in received:
            assert messages == expected
        for client in healthy:
            assert await client.nothing_within(0.05)

        # The client that stopped reading is still only its own problem (its backlog
        # is capped per socket: tests/e2e/test_faults.py), and the server goes on.
        assert stalled.state.name in {"OPEN", "CLOSING", "CLOSED"}  # type: ignore[attr-defined]
        token = await asyncio.to_thread(sign_up, server.base, "after")
        post = 'mutation { createStatusChange(input: {status: "still here"}) { id } }'
        assert "errors" not in await ahttp_gql(server.base, post, None, token)
        for client in healthy:
            joined, posted = [(await client.next_data())["activity"]["message"] for _ in "12"]
            assert (joined, posted) == ("after joined", "after changed status to 'still here'")
        for client in healthy:
            await client.close()


async def test_keepalive_pings_answered_sockets_and_closes_silent_ones(tmp_path: Path) -> None:
    with daphne_server(tmp_path, env={"PULSE_KEEPALIVE_SECONDS": "0.5"}) as server:
        answering = await WSClient.open(server.base, TRANSPORT_WS)
        legacy = await WSClient.open(server.base, LEGACY_WS)
        silent = await WSClient.open(server.base, TRANSPORT_WS)
        assert await answering.nothing_within(2.5)  # pings came and were answered
        kinds = set()
        while "ka" not in kinds:
            kinds.add(json.loads(await asyncio.wait_for(legacy.ws.recv(), 2))["type"])
        codes = []
        try:
            while True:
                kinds.add(json.loads(await asyncio.wait_for(silent.ws.recv(), 5))["type"])
        except ConnectionClosed as closed:
            codes.append(closed.rcvd.code if closed.rcvd else None)
        assert "ping" in kinds and codes == [4504]
        # A client's own ping is answered with a pong.
        await answering.ws.send(json.dumps({"type": "ping"}))
        while (
            kind := json.loads(await asyncio.wait_for(answering.ws.recv(), 2))["type"]
        ) == "ping":
            pass
        assert kind == "pong"
        await answering.close()
        await legacy.close()
