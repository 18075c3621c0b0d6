"""GraphQL over Server-Sent Events at ``/graphql/stream``: the ``graphql-sse`` protocol.

*Distinct connections mode*: one request per operation (``POST`` JSON, or ``GET`` with
``query``/``variables``/``operationName`` in the URL, so a browser's ``EventSource``
works), answered with an event stream. *Single connection mode*: ``PUT`` reserves a
stream and answers its token; ``GET`` with the token (``X-GraphQL-Event-Stream-Token``
header or ``token`` parameter) opens it; ``POST`` with the token and
``extensions.operationId`` starts an operation whose results arrive on that stream;
``DELETE ?operationId=`` stops one.

Every ``next`` event of a live item carries ``id: <cursor>``, and a request with
``Last-Event-ID`` (what ``EventSource`` sends when it reconnects) resumes after it.
The engine does the rest; this module only frames events.

Single connection streams live in the process that reserved them, so behind several
processes the requests of one stream must reach the same one (sticky on the token).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import parse_qs

from django.conf import settings
from graphql import GraphQLError
from strawberry.types.execution import ExecutionResult, PreExecutionError

from schema.errors import FORBIDDEN, GRAPHQL_VALIDATION_FAILED, RATE_LIMITED
from schema.live.engine import Item, Subscriber, get_engine
from schema.live.http import (
    HTTPViewer,
    Receive,
    ResponseStream,
    Scope,
    Send,
    Unauthenticated,
    authenticate,
    counted_connection,
    errors_body,
    header,
    live_schema,
    parse_params,
    read_body,
    respond,
    respond_unauthenticated,
    result_json,
    until_disconnected,
)
from schema.live.keepalive import keepalive_ticker

logger = logging.getLogger(__name__)

EVENT_STREAM = b"text/event-stream; charset=utf-8"
TOKEN_HEADER = "x-graphql-event-stream-token"  # noqa: S105 (a header name)
KEEPALIVE = b":\n\n"  # an SSE comment: ignored by clients, keeps proxies from timing out
RESERVATION_SECONDS = 60.0  # a reserved stream not opened within this is forgotten
MAX_RESERVATIONS = 10_000  # per process


def event(name: bytes, data: bytes | None, event_id: bytes | None = None) -> bytes:
    """One SSE event."""
    lines = b"event: " + name
    if event_id is not None:
        lines += b"\nid: " + event_id
    if data is not None:
        lines += b"\ndata: " + data
    return lines + b"\n\n"


class SSEChannel:
    """One event stream response and the keep-alive it gets."""

    last_heard: float | None = None  # SSE clients cannot answer keep-alives

    def __init__(self, send: Send, scope: Scope) -> None:
        self.response = ResponseStream(send, scope)

    async def open(self) -> None:
        await self.response.start(EVENT_STREAM)
        # Some browsers only report the stream open once a first byte arrives.
        await self.response.write(KEEPALIVE)
        keepalive_ticker().add(self)

    async def send_keepalive(self) -> None:
        await self.response.write(KEEPALIVE)

    async def close_silent(self) -> None:  # never called: ``last_heard`` is None
        await self.close()

    @property
    def closed(self) -> bool:
        return self.response.closed

    async def write(self, data: bytes) -> None:
        await self.response.write(data)

    async def close(self) -> None:
        keepalive_ticker().discard(self)
        await self.response.finish()


class EventOutput(Protocol):
    """Where an operation's events go: its own response, or a single connection stream."""

    @property
    def closed(self) -> bool: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class SSEOperation:
    """One operation on an event stream, and its sink in the engine.

    Without ``operation_id`` (distinct connections) events carry the execution result
    itself; with one (single connection) ``{"id": ..., "payload": ...}``.
    """

    def __init__(self, output: EventOutput, operation_id: str | None = None) -> None:
        self.output = output
        self.id = operation_id
        self.done = False
        self.rejected: PreExecutionError | None = None
        self.subscriber: Subscriber | None = None
        self.task: asyncio.Task[None] | None = None
        if operation_id is None:
            self._open, self._close = b"", b""
        else:
            self._open = b'{"id":' + json.dumps(operation_id).encode() + b',"payload":'
            self._close = b"}"
        self.encoding = (__name__, self._open)

    def _data(self, payload: bytes) -> bytes:
        return self._open + payload + self._close

    def encode(self, items: Sequence[Item]) -> Any:
        return b"".join(
            event(b"next", self._data(item.payload), item.cursor.encode() or None) for item in items
        )

    async def write(self, encoded: Any) -> None:
        await self.output.write(encoded)

    def is_open(self) -> bool:
        return not self.output.closed and not self.done

    async def send_result(self, result: ExecutionResult) -> None:
        await self.output.write(event(b"next", self._data(result_json(result))))

    async def reject(self, result: PreExecutionError) -> None:
        if self.id is not None:
            # Single connection: the POST that started it answers with the errors.
            self.rejected = result
            self.done = True
            return
        # Distinct connection: the protocol reports refusals as a ``next`` event.
        await self.output.write(event(b"next", result_json(result)))
        await self.complete()

    async def complete(self) -> None:
        if self.done:
            return
        self.done = True
        if self.id is None:
            await self.output.write(event(b"complete", None))
            await self.output.close()
        else:
            data = json.dumps({"id": self.id}).encode()
            await self.output.write(event(b"complete", data))

    async def fail(self, errors: list[GraphQLError]) -> None:
        if self.done:
            return
        formatted = [error.formatted for error in errors]
        body = json.dumps({"data": None, "errors": formatted}, separators=(",", ":"))
        await self.output.write(event(b"next", self._data(body.encode())))
        await self.complete()

    async def abort(self) -> None:
        self.done = True
        await self.output.close()

    def stop(self) -> None:
        """The client stopped it (``DELETE``) or its stream closed."""
        self.done = True
        if self.task is not None:
            self.task.cancel()
        if self.subscriber is not None:
            get_engine(live_schema()).end(self.subscriber)
            self.subscriber = None


class ReservedStream:
    """A single connection mode stream: reserved by ``PUT``, opened by ``GET``."""

    def __init__(self, token: str, viewer_id: int | None) -> None:
        self.token = token
        self.viewer_id = viewer_id
        self.reserved_at = time.monotonic()
        self.channel: SSEChannel | None = None
        self.operations: dict[str, SSEOperation] = {}
        self.backlog: list[bytes] = []  # written before the stream was opened

    @property
    def closed(self) -> bool:
        return self.channel is not None and self.channel.closed

    async def write(self, data: bytes) -> None:
        """To the open stream; kept (bounded) until ``GET`` opens it."""
        if self.channel is not None:
            await self.channel.write(data)
        elif len(self.backlog) < settings.PULSE_SUBSCRIBER_QUEUE_SIZE:
            self.backlog.append(data)

    async def close(self) -> None:
        """One operation ending does not end the stream."""

    async def serve(self, scope: Scope, send: Send, receive: Receive) -> None:
        """Be the stream until the client goes; then end everything on it."""
        channel = self.channel = SSEChannel(send, scope)
        await channel.open()
        try:
            for data in self.backlog:
                await channel.write(data)
            self.backlog.clear()
            await until_disconnected(receive)
        finally:
            channel.response.closed = True
            for operation in list(self.operations.values()):
                operation.stop()
            self.operations.clear()
            keepalive_ticker().discard(channel)
            _reservations.pop(self.token, None)


_reservations: dict[str, ReservedStream] = {}


def _purge_expired() -> None:
    now = time.monotonic()
    for token, stream in list(_reservations.items()):
        if stream.channel is None and now - stream.reserved_at > RESERVATION_SECONDS:
            del _reservations[token]


async def serve_sse(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application of ``/graphql/stream``."""
    method = scope["method"]
    body = b""
    if method == "POST":
        read = await read_body(receive)
        if read is None:
            return
        body = read
    try:
        viewer = await authenticate(scope, body)
    except Unauthenticated as error:
        await respond_unauthenticated(send, str(error))
        return
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    token = header(scope, TOKEN_HEADER) or (query.get("token") or [None])[-1]
    stream = _reservations.get(token) if token else None
    accept = header(scope, "accept") or "*/*"
    if stream is not None and stream.viewer_id != viewer.viewer_id:
        await respond(send, 403, errors_body("This stream is someone else's.", FORBIDDEN))
        return

    if "text/event-stream" in accept and method in ("GET", "POST"):
        if stream is not None and stream.channel is not None:
            await respond(send, 409, errors_body("Stream already open.", RATE_LIMITED))
            return
        async with counted_connection(viewer, send, scope, "sse") as counted:
            if not counted:
                return
            if stream is None:
                await _distinct(scope, receive, send, method, body, viewer)
            else:
                await stream.serve(scope, send, receive)
        return
    if method == "PUT":
        await _reserve(send, viewer)
    elif method == "DELETE":
        await _stop(send, stream, query)
    elif method == "POST":
        await _start(send, stream, scope, body, viewer)
    else:
        await respond(send, 405, b"", None, [(b"allow", b"GET, POST, PUT, DELETE")])


async def _distinct(
    scope: Scope, receive: Receive, send: Send, method: str, body: bytes, viewer: HTTPViewer
) -> None:
    params = parse_params(method, scope, body)
    if isinstance(params, str):
        await respond(send, 400, errors_body(params, GRAPHQL_VALIDATION_FAILED))
        return
    channel = SSEChannel(send, scope)
    await channel.open()
    operation = SSEOperation(channel)
    subscriber = None
    try:
        subscriber = await get_engine(live_schema()).run(
            query=params["query"],
            variables=params.get("variables"),
            operation_name=params.get("operationName"),
            context=viewer.context,
            viewer_id=viewer.viewer_id,
            sink=operation,
            resume_cursor=header(scope, "last-event-id") or None,
        )
        if subscriber is not None:
            operation.subscriber = subscriber
            await until_disconnected(receive)  # a subscription ends when the client goes
    finally:
        operation.stop()
        with contextlib.suppress(Exception):
            await channel.close()  # done, or the client is gone (then nothing is sent)


async def _reserve(send: Send, viewer: HTTPViewer) -> None:
    _purge_expired()
    if len(_reservations) >= MAX_RESERVATIONS:
        await respond(send, 503, errors_body("Too many event streams.", RATE_LIMITED))
        return
    token = secrets.token_urlsafe(24)
    _reservations[token] = ReservedStream(token, viewer.viewer_id)
    await respond(send, 201, token.encode(), "text/plain; charset=utf-8")


async def _stop(send: Send, stream: ReservedStream | None, query: dict[str, list[str]]) -> None:
    if stream is None:
        await respond(send, 404, errors_body("Stream not found.", GRAPHQL_VALIDATION_FAILED))
        return
    operation_id = (query.get("operationId") or [""])[-1]
    if not operation_id:
        await respond(send, 400, errors_body("operationId is missing.", GRAPHQL_VALIDATION_FAILED))
        return
    operation = stream.operations.pop(operation_id, None)
    if operation is not None:
        operation.stop()
    await respond(send, 200, b"", None)


async def _start(
    send: Send, stream: ReservedStream | None, scope: Scope, body: bytes, viewer: HTTPViewer
) -> None:
    if stream is None:
        await respond(send, 404, errors_body("Stream not found.", GRAPHQL_VALIDATION_FAILED))
        return
    params = parse_params("POST", scope, body)
    if isinstance(params, str):
        await respond(send, 400, errors_body(params, GRAPHQL_VALIDATION_FAILED))
        return
    operation_id = str((params.get("extensions") or {}).get("operationId") or "")
    if not operation_id:
        await respond(
            send, 400, errors_body("extensions.operationId is missing.", GRAPHQL_VALIDATION_FAILED)
        )
        return
    if operation_id in stream.operations:
        await respond(send, 409, errors_body("Operation with that id exists.", RATE_LIMITED))
        return
    limit = settings.PULSE_MAX_OPERATIONS_PER_SOCKET
    if len(stream.operations) >= limit:
        message = f"At most {limit} operations may run at once on one stream."
        await respond(send, 429, errors_body(message, RATE_LIMITED))
        return
    operation = SSEOperation(stream, operation_id)
    stream.operations[operation_id] = operation
    try:
        operation.subscriber = await get_engine(live_schema()).run(
            query=params["query"],
            variables=params.get("variables"),
            operation_name=params.get("operationName"),
            context=viewer.context,
            viewer_id=viewer.viewer_id,
            sink=operation,
        )
    except Exception:
        logger.exception("SSE operation %s failed", operation_id)
        stream.operations.pop(operation_id, None)
        raise
    if operation.subscriber is None:
        stream.operations.pop(operation_id, None)
    if operation.rejected is not None:
        await respond(send, 400, result_json(operation.rejected))
        return
    await respond(send, 202, b"", None)
