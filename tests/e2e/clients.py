"""Small real clients: GraphQL over HTTP and over WebSocket (both subprotocols)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

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
