"""Abuse limits and malformed input against a real daphne, with real clients.

The server runs with small socket and operation limits so each one is reached quickly;
the body and message limits keep their 1 MiB defaults.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.e2e.clients import (
    LEGACY_WS,
    TRANSPORT_WS,
    WSClient,
    http_gql,
    sign_up,
    subscriptions_active,
    until,
    until_subscribed,
)
from tests.e2e.servers import daphne_server, new_database

pytestmark = pytest.mark.e2e

MAX_SOCKETS_PER_USER = 3
MAX_OPERATIONS_PER_SOCKET = 3
ONE_MIB = 1024 * 1024
LIVE = "subscription { activity { cursor } }"


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "PULSE_MAX_SOCKETS_PER_USER": str(MAX_SOCKETS_PER_USER),
        "PULSE_MAX_OPERATIONS_PER_SOCKET": str(MAX_OPERATIONS_PER_SOCKET),
    }
    with daphne_server(tmp_path_factory.mktemp("daphne-limits"), env=env) as daphne:
        yield daphne.base


def post(base: str, body: bytes, *, chunked: bool = False) -> tuple[int, dict[str, Any]]:
    """POST raw bytes to /graphql/; returns the status and the decoded JSON body."""
    address = urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    try:
        if chunked:
            pieces = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
            connection.request("POST", "/graphql/", pieces, headers, encode_chunked=True)
        else:
            connection.request("POST", "/graphql/", body, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def padded_query(total_bytes: int) -> bytes:
    """A valid GraphQL request body of exactly ``total_bytes`` (padded with spaces)."""
    head, tail = b'{"query": "{ me { id } }', b'"}'
    return head + b" " * (total_bytes - len(head) - len(tail)) + tail


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_request_body_over_the_limit_is_413(limited_server: str, chunked: bool) -> None:
    status, body = post(limited_server, padded_query(ONE_MIB + 1), chunked=chunked)
    assert status == 413
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["PAYLOAD_TOO_LARGE"]

    status, body = post(limited_server, padded_query(ONE_MIB), chunked=chunked)
    assert (status, body) == (200, {"data": {"me": None}})


async def test_websocket_message_over_the_limit_closes_with_1009(limited_server: str) -> None:
    bystander = await WSClient.open(limited_server, TRANSPORT_WS)
    await bystander.subscribe("live", LIVE)
    client = await WSClient.open(limited_server, TRANSPORT_WS)
    await client.ws.send(json.dumps({"type": "ping", "payload": {"pad": "x" * ONE_MIB}}))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(client.ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    await assert_still_served(limited_server, bystander)


async def test_sockets_per_user_are_capped_with_4429(limited_server: str) -> None:
    token = await asyncio.to_thread(sign_up, limited_server, "many_sockets")
    sockets = [
        await WSClient.open(limited_server, TRANSPORT_WS, token)
        for _ in range(MAX_SOCKETS_PER_USER)
    ]
    for protocol in (TRANSPORT_WS, LEGACY_WS):
        refused = await connect_and_init(limited_server, protocol, token)
        assert refused == ("closed", 4429), protocol
    # Anonymous sockets and other users are not affected; closing one frees a place.
    await (await WSClient.open(limited_server, TRANSPORT_WS)).close()
    await sockets.pop().close()
    sockets.append(await open_once_admitted(limited_server, token))
    for open_socket in sockets:
        await open_socket.close()


async def open_once_admitted(base: str, token: str, timeout: float = 10) -> WSClient:
    """A socket for the token's user as soon as the server has a place for it again: the
    place of a closed socket is freed when the server has seen it close, and until then
    a new one is refused with 4429."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await WSClient.open(base, TRANSPORT_WS, token)
            except ConnectionClosed as closed:
                if closed.rcvd is None or closed.rcvd.code != 4429:
                    raise
            await asyncio.sleep(0.05)


async def connect_and_init(base: str, protocol: str, token: str) -> tuple[str, int | None]:
    """Open a socket and send connection_init; how did the server answer?"""
    url = base.replace("http", "ws", 1) + "/graphql/"
    async with connect(url, subprotocols=[Subprotocol(protocol)]) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        try:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] == "connection_ack":
                    return ("ack", None)
        except ConnectionClosed as closed:
            return ("closed", closed.rcvd.code if closed.rcvd else None)


async def test_operations_per_socket_are_capped_with_rate_limited(limited_server: str) -> None:
    client = await WSClient.open(limited_server, TRANSPORT_WS)
    active = await subscriptions_active(limited_server)
    for n in range(MAX_OPERATIONS_PER_SOCKET):
        await client.subscribe(str(n), LIVE)
    await client.subscribe("one-too-many", LIVE)
    refused = json.loads(await asyncio.wait_for(client.ws.recv(), 10))
    assert refused["type"] == "error" and refused["id"] == "one-too-many"
    assert [e["extensions"]["code"] for e in refused["payload"]] == ["RATE_LIMITED"]
    await until_subscribed(limited_server, active + MAX_OPERATIONS_PER_SOCKET)

    await client.ws.send(json.dumps({"id": "0", "type": "complete"}))

    async def completed() -> bool:
        return await subscriptions_active(limited_server) < active + MAX_OPERATIONS_PER_SOCKET

    await until(completed, what="the completed operation ending")
    await client.subscribe("now-there-is-room", LIVE)
    await until_subscribed(limited_server, active + MAX_OPERATIONS_PER_SOCKET)  # accepted
    assert await client.nothing_within(0.5)  # and no error follows
    await client.close()


async def assert_still_served(base: str, bystander: WSClient) -> None:
    """A subscriber on another socket still gets live activity."""
    token = await asyncio.to_thread(sign_up, base, f"witness{id(bystander)}")
    del token  # signing up publishes USER_JOINED, which the bystander must receive
    data = await bystander.next_data()
    assert data["activity"]["cursor"]
    await bystander.close()


MALFORMED_TEXT = [
    "not json",
    "[1, 2, 3]",
    '"a string"',
    "{}",
    '{"type": 7}',
    '{"type": "no-such-type"}',
    '{"type": "subscribe"}',
    '{"type": "subscribe", "id": 5, "payload": {"query": "{ me { id } }"}}',
    '{"type": "subscribe", "id": "1", "payload": "not an object"}',
    '{"type": "subscribe", "id": "1", "payload": {"query": 12}}',
    '{"type": "start", "id": "1", "payload": {"query": ["x"]}}',
    '{"type": "start", "payload": {"query": "subscription { activity { cursor } }"}}',
    '{"type": "stop"}',
]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_malformed_messages_close_that_socket_with_4400(
    limited_server: str, protocol: str
) -> None:
    bystander = await WSClient.open(limited_server, TRANSPORT_WS)
    await bystander.subscribe("live", LIVE)
    answers: dict[str, int | str] = {}
    messages: list[str | bytes] = [*MALFORMED_TEXT, b"\x00binary"]
    for text in messages:
        client = await WSClient.open(limited_server, protocol)
        await client.ws.send(text)
        answers[repr(text)] = await close_code(client)
    assert answers == dict.fromkeys(answers, 4400)
    await assert_still_served(limited_server, bystander)


async def close_code(client: WSClient) -> int | str:
    """The code the server closes with, or what it sent instead within 5 s."""
    try:
        while True:
            message = await asyncio.wait_for(client.ws.recv(), 5)
            if json.loads(message)["type"] not in {"ka", "ping", "pong"}:
                return f"answered {message!r}"
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else "dropped"
    except TimeoutError:
        await client.close()
        return "still open"


async def test_broken_websocket_framing_closes_with_1002(limited_server: str) -> None:
    """A frame that breaks RFC 6455 itself (unmasked from a client) ends that socket only."""
    bystander = await WSClient.open(limited_server, TRANSPORT_WS)
    await bystander.subscribe("live", LIVE)
    address = urlsplit(limited_server)
    raw = await asyncio.to_thread(socket.create_connection, (address.hostname, address.port), 10)
    try:
        raw.sendall(
            b"GET /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        )
        raw.settimeout(10)
        handshake = raw.recv(4096)
        assert handshake.startswith(b"HTTP/1.1 101"), handshake
        payload = b'{"type": "connection_init"}'
        raw.sendall(struct.pack("!BB", 0x81, len(payload)) + payload)  # no mask bit
        answer = raw.recv(4096)
        opcode, code = answer[0] & 0x0F, struct.unpack("!H", answer[2:4])[0]
        assert (opcode, code) == (0x8, 1002)
    finally:
        raw.close()
    await assert_still_served(limited_server, bystander)


async def test_queries_over_the_websocket(limited_server: str) -> None:
    """graphql-transport-ws runs queries; legacy graphql-ws refuses them with a clear code."""
    modern = await WSClient.open(limited_server, TRANSPORT_WS)
    await modern.subscribe("q", "{ me { id } }")
    assert await modern.next_data() == {"me": None}
    await modern.close()

    legacy = await WSClient.open(limited_server, LEGACY_WS)
    await legacy.subscribe("q", "{ me { id } }")
    while (answer := json.loads(await asyncio.wait_for(legacy.ws.recv(), 10)))["type"] == "ka":
        pass
    errors = answer["payload"]["errors"] if "errors" in answer["payload"] else [answer["payload"]]
    assert [e["extensions"]["code"] for e in errors] == ["GRAPHQL_VALIDATION_FAILED"], answer
    assert "graphql-transport-ws" in errors[0]["message"]
    await legacy.close()


def test_failed_logins_are_counted_across_processes_in_redis(
    tmp_path: Path, redis_url: str
) -> None:
    """With REDIS_URL, the login limit is one count shared by every server process."""
    database = new_database(os.environ.get("DATABASE_URL", ""), "pulse_throttle", tmp_path)
    env = {"REDIS_URL": redis_url, "PULSE_LOGIN_MAX_FAILURES": "4"}
    login = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }"
    with daphne_server(tmp_path, database, env) as a, daphne_server(tmp_path, database, env) as b:
        sign_up(a.base, "throttled")
        codes = []
        for n in range(4):
            server = (a, b)[n % 2]
            body = http_gql(server.base, login, {"u": "throttled", "p": "wrong"})
            codes.append(body["errors"][0]["extensions"]["code"])
        assert codes == ["UNAUTHENTICATED"] * 4
        for server in (a, b):
            body = http_gql(server.base, login, {"u": "throttled", "p": "correct horse 9 battery"})
            assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
