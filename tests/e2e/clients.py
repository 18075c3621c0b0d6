"""Small real clients: GraphQL over HTTP, WebSocket (both subprotocols), SSE, multipart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
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


async def until(
    check: Callable[[], Awaitable[bool]], timeout: float = 10, what: str = "the condition"
) -> None:
    """Poll ``check`` until it holds; fails after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what} did not hold within {timeout}s") from None


async def metric(base: str, name: str, **labels: str) -> float:
    """One sample of the ``/metrics`` of the server process at ``base`` (0 if absent)."""
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        response = await client.get("/metrics")
    response.raise_for_status()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def subscriptions_active(bases: str | Iterable[str]) -> int:
    """The live subscriptions the server process at ``bases`` (or the sum over several:
    each process counts only its own) has in its fan-out: ``pulse_subscriptions_active``."""
    bases = [bases] if isinstance(bases, str) else list(bases)
    counts = await asyncio.gather(*(metric(b, "pulse_subscriptions_active") for b in bases))
    return int(sum(counts))


async def until_subscribed(bases: str | Iterable[str], count: int, timeout: float = 10) -> None:
    """Until the server process(es) at ``bases`` count at least ``count`` live
    subscriptions: read :func:`subscriptions_active` before subscribing, then wait for
    it plus the new ones. A subscription is counted from when it joins its process's
    fan-out: an activity committed after this returns reaches it."""
    bases = [bases] if isinstance(bases, str) else list(bases)

    async def counted() -> bool:
        return await subscriptions_active(bases) >= count

    await until(counted, timeout, f"{count} live subscriptions on {', '.join(bases)}")


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

    async def until_comments(self, count: int, timeout: float = 10) -> None:
        """Read on until ``count`` comments (keep-alives) have come in all; fails on an
        event."""
        async with asyncio.timeout(timeout):
            while self.comments < count:
                line = await anext(self._lines, None)
                if line is None:
                    raise AssertionError("the event stream ended")
                if line.startswith(":"):
                    self.comments += 1
                elif line:
                    raise AssertionError(f"unexpected line {line!r}")

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
            while (part := await self._read_part()) == {}:
                self.heartbeats += 1
            return part

    async def until_heartbeats(self, count: int, timeout: float = 10) -> None:
        """Read on until ``count`` heartbeats (``{}``) have come in all; fails on a part
        with content."""
        async with asyncio.timeout(timeout):
            while self.heartbeats < count:
                part = await self._read_part()
                if part != {}:
                    raise AssertionError(f"unexpected part {part!r}")
                self.heartbeats += 1

    async def _read_part(self) -> dict[str, Any]:
        while True:
            start = self._buffer.find(b"\r\n\r\n")
            end = self._buffer.find(b"\r\n--graphql", start + 4) if start >= 0 else -1
            if start >= 0 and end >= 0:
                body, self._buffer = self._buffer[start + 4 : end], self._buffer[end:]
                part: dict[str, Any] = json.loads(body)
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
