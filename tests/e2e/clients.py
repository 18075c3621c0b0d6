"""Small real clients: GraphQL over HTTP, WebSocket (both subprotocols), SSE, multipart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

TRANSPORT_WS = Subprotocol("graphql-transport-ws")
LEGACY_WS = Subprotocol("graphql-ws")


def http_gql(
    base: str, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    """POST one operation (blocking) and return the decoded body."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 (loopback)
        base + "/graphql/",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers=headers,
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        body: dict[str, Any] = json.loads(response.read())
    return body


async def ahttp_gql(
    base: str, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    return await asyncio.to_thread(http_gql, base, query, variables, token)


def sign_up(base: str, username: str) -> str:
    """Create a user and return a bearer token for them."""
    password = "correct horse 9 battery"
    created = http_gql(
        base,
        "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
        {"i": {"username": username, "email": f"{username}@example.com", "password": password}},
    )
    assert "errors" not in created, created
    body = http_gql(
        base,
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
        {"u": username, "p": password},
    )
    return str(body["data"]["login"]["token"])


class WSClient:
    """A GraphQL WebSocket client speaking either subprotocol."""

    def __init__(self, ws: ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol

    @classmethod
    async def open(cls, base: str, protocol: str, token: str | None = None) -> WSClient:
        ws = await connect(
            base.replace("http", "ws", 1) + "/graphql/", subprotocols=[Subprotocol(protocol)]
        )
        client = cls(ws, protocol)
        payload = {"authorization": f"Bearer {token}"} if token else {}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        return client

    async def subscribe(
        self, op_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables or {}}
        await self.ws.send(json.dumps({"id": op_id, "type": kind, "payload": payload}))

    async def next_data(self, timeout: float = 10) -> dict[str, Any]:
        """The next result's ``data``, skipping keep-alives; fails on errors."""
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if message["type"] == "ping":  # as the graphql-ws client does by itself
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            if message["type"] in {"ka", "pong"}:
                continue
            assert message["type"] in {"next", "data"}, message
            assert "errors" not in message["payload"], message
            data: dict[str, Any] = message["payload"]["data"]
            return data

    async def nothing_within(self, seconds: float) -> bool:
        """No message but keep-alives (pings answered) for ``seconds``."""
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                message = await asyncio.wait_for(self.ws.recv(), left)
            except TimeoutError:
                return True
            kind = json.loads(message).get("type")
            if kind == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
            elif kind not in {"ka", "pong"}:
                raise AssertionError(f"unexpected message {message!r}")
        return True

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class SSEEvent:
    event: str
    data: Any
    id: str | None = None


class EventStream:
    """A GraphQL over SSE response, read event by event (comments are counted)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments = 0
        self._lines = response.aiter_lines()

    async def next_event(self, timeout: float = 10) -> SSEEvent:
        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            async for line in self._lines:
                if line == "":
                    if fields:
                        data = fields.get("data")
                        return SSEEvent(
                            fields.get("event", ""),
                            json.loads(data) if data else None,
                            fields.get("id"),
                        )
                    continue
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
        raise AssertionError("the event stream ended")

    async def next_data(self, timeout: float = 10) -> SSEEvent:
        """The next ``next`` event; fails on anything else."""
        found = await self.next_event(timeout)
        assert found.event == "next", found
        return found


@contextlib.asynccontextmanager
async def event_stream(base: str, method: str = "GET", **kwargs: Any) -> AsyncIterator[EventStream]:
    """Open ``/graphql/stream`` (distinct connections mode unless a token header is given)."""
    headers = {"Accept": "text/event-stream", **kwargs.pop("headers", {})}
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream(method, "/graphql/stream", headers=headers, **kwargs) as response,
    ):
        yield EventStream(response)


class MultipartStream:
    """A multipart subscription response, read part by part (``{}`` heartbeats counted)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.heartbeats = 0
        self._chunks = response.aiter_bytes()
        self._buffer = b""

    async def next_part(self, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                start = self._buffer.find(b"\r\n\r\n")
                end = self._buffer.find(b"\r\n--graphql", start + 4) if start >= 0 else -1
                if start >= 0 and end >= 0:
                    body, self._buffer = self._buffer[start + 4 : end], self._buffer[end:]
                    part: dict[str, Any] = json.loads(body)
                    if part == {}:
                        self.heartbeats += 1
                        continue
                    return part
                chunk = await anext(self._chunks, None)
                if chunk is None:
                    raise AssertionError(f"the multipart stream ended: {self._buffer!r}")
                self._buffer += chunk


@contextlib.asynccontextmanager
async def multipart_subscription(
    base: str,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
    accept: str = 'multipart/mixed;subscriptionSpec="1.0",application/json',
    operation_name: str | None = None,
) -> AsyncIterator[MultipartStream]:
    """``POST /graphql/`` as Apollo Client's ``HttpLink`` subscribes."""
    headers = {"Accept": accept, "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"query": query, "variables": variables or {}, "operationName": operation_name}
    content = json.dumps(body, ensure_ascii=True)  # lone surrogates stay escaped
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream("POST", "/graphql/", headers=headers, content=content) as response,
    ):
        yield MultipartStream(response)
