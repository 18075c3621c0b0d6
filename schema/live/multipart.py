"""Multipart HTTP subscriptions: ``POST /graphql/`` as Apollo Client's ``HttpLink`` sends it.

A request accepting ``multipart/mixed;subscriptionSpec=1.0`` is answered with a
``multipart/mixed`` stream: each result is a part ``{"payload": <execution result>}``
and an empty ``{}`` part is a heartbeat. The subscription ends when the client closes
the response. The engine does the rest; this module only frames parts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from graphql import GraphQLError
from strawberry.types.execution import ExecutionResult, PreExecutionError

from schema.errors import GRAPHQL_VALIDATION_FAILED
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
    live_schema,
    parse_params,
    read_body,
    respond,
    respond_unauthenticated,
    result_json,
    until_disconnected,
)
from schema.live.keepalive import keepalive_ticker

CONTENT_TYPE = b'multipart/mixed; boundary="graphql"; subscriptionSpec="1.0"'
# Each part is followed at once by the next delimiter: clients (Apollo's) hand a part
# over only when they see the delimiter after it.
FIRST_DELIMITER = b"\r\n--graphql"
PART = b"\r\ncontent-type: application/json; charset=utf-8\r\n\r\n"
DELIMITER = b"\r\n--graphql"
END = b"--\r\n"
HEARTBEAT = PART + b"{}" + DELIMITER


class MultipartSubscription:
    """One multipart response, its sink in the engine and its heartbeat."""

    encoding = (__name__,)
    last_heard: float | None = None  # the client cannot answer heartbeats

    def __init__(self, send: Send, scope: Scope) -> None:
        self.response = ResponseStream(send, scope)
        self.subscriber: Subscriber | None = None

    def encode(self, items: Sequence[Item]) -> Any:
        return b"".join(PART + b'{"payload":' + item.payload + b"}" + DELIMITER for item in items)

    async def write(self, encoded: Any) -> None:
        await self.response.write(encoded)

    def is_open(self) -> bool:
        return not self.response.closed

    async def send_result(self, result: ExecutionResult) -> None:
        await self.response.write(PART + b'{"payload":' + result_json(result) + b"}" + DELIMITER)

    async def reject(self, result: PreExecutionError) -> None:
        await self.send_result(result)  # type: ignore[arg-type]
        await self.complete()

    async def complete(self) -> None:
        keepalive_ticker().discard(self)
        await self.response.finish(END)

    async def fail(self, errors: list[GraphQLError]) -> None:
        formatted = [error.formatted for error in errors]
        body = json.dumps({"payload": {"data": None, "errors": formatted}}).encode()
        await self.response.write(PART + body + DELIMITER)
        await self.complete()

    async def abort(self) -> None:
        await self.complete()

    async def send_keepalive(self) -> None:
        await self.response.write(HEARTBEAT)

    async def close_silent(self) -> None:  # never called: ``last_heard`` is None
        await self.complete()


async def serve_multipart(scope: Scope, receive: Receive, send: Send) -> None:
    """Run one operation as a multipart stream."""
    body = await read_body(receive)
    if body is None:
        return
    try:
        viewer = await authenticate(scope, body)
    except Unauthenticated as error:
        await respond_unauthenticated(send, str(error))
        return
    params = parse_params("POST", scope, body)
    if isinstance(params, str):
        await respond(send, 400, errors_body(params, GRAPHQL_VALIDATION_FAILED))
        return
    async with counted_connection(viewer, send, scope, "multipart") as counted:
        if counted:
            await _stream(scope, receive, send, params, viewer)


async def _stream(
    scope: Scope, receive: Receive, send: Send, params: dict[str, Any], viewer: HTTPViewer
) -> None:
    subscription = MultipartSubscription(send, scope)
    await subscription.response.start(CONTENT_TYPE)
    await subscription.response.write(FIRST_DELIMITER)
    keepalive_ticker().add(subscription)
    engine = get_engine(live_schema())
    try:
        subscription.subscriber = await engine.run(
            query=params["query"],
            variables=params.get("variables"),
            operation_name=params.get("operationName"),
            context=viewer.context,
            viewer_id=viewer.viewer_id,
            sink=subscription,
        )
        if subscription.subscriber is not None:
            await until_disconnected(receive)  # it ends when the client closes
    finally:
        if subscription.subscriber is not None:
            engine.end(subscription.subscriber)
        with contextlib.suppress(Exception):
            await subscription.complete()
