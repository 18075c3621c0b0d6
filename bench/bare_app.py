"""The ceiling: a bare ASGI app speaking just enough graphql-transport-ws to fan out.

Serve with ``python -m daphne -b 127.0.0.1 -p PORT bench.bare_app:application``.

- WebSocket (any path): answers ``connection_init`` with ``connection_ack``, remembers
  the id of each ``subscribe`` (and forgets it on ``complete`` or disconnect), answers
  ``ping`` with ``pong``.
- ``POST /publish`` with ``{"status": "..."}``: encodes the activity once, in the same
  JSON shape as Pulse's ``activity`` subscription result, and sends one ``next`` frame
  to every subscription of this process. Nothing else: no channel layer, no GraphQL.
- ``GET /healthz``: 200.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SUBPROTOCOL = "graphql-transport-ws"

# (connection number, operation id) -> the connection's ASGI send
_subscriptions: dict[tuple[int, str], Send] = {}
_connections = itertools.count(1)
_activity_ids = itertools.count(1)


def activity_payload(activity_id: int, status: str) -> str:
    """The ``payload`` of a ``next`` frame, shaped like Pulse's, encoded once."""
    cursor = base64.b64encode(f"activity:{activity_id}".encode()).decode()
    result = {
        "data": {
            "activity": {
                "cursor": cursor,
                "kind": "STATUS_CHANGE",
                "message": f"bench changed status to {status!r}",
                "actor": {"username": "bench"},
                "event": {"status": status},
            }
        }
    }
    return json.dumps(result, separators=(",", ":"))


async def broadcast(status: str) -> int:
    """Send one ``next`` frame per subscription; returns how many were sent."""
    payload = activity_payload(next(_activity_ids), status)
    prefixes: dict[str, str] = {}
    sent = 0
    for (_, operation_id), send in list(_subscriptions.items()):
        prefix = prefixes.get(operation_id)
        if prefix is None:
            prefix = prefixes[operation_id] = (
                '{"id":' + json.dumps(operation_id) + ',"type":"next","payload":'
            )
        await send({"type": "websocket.send", "text": prefix + payload + "}"})
        sent += 1
    return sent


async def _websocket(scope: Scope, receive: Receive, send: Send) -> None:
    connection = next(_connections)
    try:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.connect":
                await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
            elif kind == "websocket.disconnect":
                return
            elif kind == "websocket.receive":
                await _frame(connection, message.get("text") or "", send)
    finally:
        for key in [key for key in _subscriptions if key[0] == connection]:
            del _subscriptions[key]


async def _frame(connection: int, text: str, send: Send) -> None:
    try:
        frame = json.loads(text)
    except ValueError:
        await send({"type": "websocket.close", "code": 4400})
        return
    kind = frame.get("type")
    if kind == "connection_init":
        await send({"type": "websocket.send", "text": '{"type":"connection_ack"}'})
    elif kind == "subscribe":
        _subscriptions[(connection, str(frame.get("id")))] = send
    elif kind == "complete":
        _subscriptions.pop((connection, str(frame.get("id"))), None)
    elif kind == "ping":
        await send({"type": "websocket.send", "text": '{"type":"pong"}'})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    body = await _read_body(receive)
    method, path = scope["method"], scope["path"]
    if method == "GET" and path == "/healthz":
        await _respond(send, 200, b'{"status":"ok"}')
    elif method == "POST" and path == "/publish":
        try:
            status = json.loads(body)["status"]
        except (ValueError, KeyError, TypeError):
            await _respond(send, 400, b'{"error":"expected {\\"status\\": \\"...\\"}"}')
            return
        sent = await broadcast(str(status))
        await _respond(send, 200, json.dumps({"sent": sent}).encode())
    else:
        await _respond(send, 404, b'{"error":"not found"}')


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point."""
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "lifespan":
        if (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        if (await receive())["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
