"""The graphql-transport-ws adapter: the ``graphql-ws`` library's protocol over the engine.

strawberry's handler keeps the connection's life (``connection_init`` and its timeout,
``ping``/``pong``, malformed messages); every ``subscribe`` (query, mutation or
subscription) runs through the live engine, and this module only turns the engine's
items into the protocol's frames and the protocol's messages into engine calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    CompleteMessage,
    ConnectionInitMessage,
    Message,
    NextMessagePayload,
    PongMessage,
    SubscribeMessage,
)
from strawberry.types.execution import ExecutionResult, PreExecutionError

from backend.server.extensions import frame_writer, text_frame
from schema.errors import RATE_LIMITED, UnrunnableDocumentError, internal_error
from schema.live.engine import Item, Subscriber, get_engine
from schema.live.keepalive import keepalive_ticker

logger = logging.getLogger(__name__)

BAD_REQUEST_CLOSE_CODE = 4400
KEEPALIVE_TIMEOUT_CLOSE_CODE = 4504
KEEPALIVE_TIMEOUT_REASON = "Keep-alive timeout: no message for three ping intervals"
PING_TEXT = '{"type":"ping"}'


def too_many_operations(operation_id: str, limit: int) -> dict[str, Any]:
    """The error answering an operation past ``PULSE_MAX_OPERATIONS_PER_SOCKET``."""
    message = f"At most {limit} operations may run at once on one socket; complete one first."
    error = GraphQLError(message, extensions={"code": RATE_LIMITED})
    return {"id": operation_id, "type": "error", "payload": [error.formatted]}


class TransportWSOperation:
    """One operation of a socket, and its sink in the engine."""

    def __init__(self, handler: GraphQLTransportWSAdapter, operation_id: str) -> None:
        self.handler = handler
        self.id = operation_id
        self.task: asyncio.Task[None] | None = None
        self.subscriber: Subscriber | None = None
        self.done = False
        self._prefix = b'{"id":' + json.dumps(operation_id).encode() + b',"type":"next","payload":'
        self.encoding = (__name__, self._prefix, handler.write_frames is not None)

    async def run(self, payload: dict[str, Any]) -> None:
        handler = self.handler
        try:
            subscriber = await handler.engine.run(
                query=payload.get("query"),
                variables=payload.get("variables"),
                operation_name=payload.get("operationName"),
                context=handler.context,
                viewer_id=handler.viewer_id(),
                sink=self,
            )
        except Exception:
            logger.exception("Operation %s failed", self.id)
            with contextlib.suppress(Exception):
                await self.fail([internal_error()])
            return
        finally:
            self.task = None
        if subscriber is None:
            self._forget()
        elif self.done:  # stopped while it started
            handler.engine.end(subscriber)
        else:
            self.subscriber = subscriber

    def stop(self) -> None:
        """The client completed it, or the socket closed: end it without a message."""
        self.done = True
        if self.task is not None:
            self.task.cancel()
        if self.subscriber is not None:
            self.handler.engine.end(self.subscriber)
            self.subscriber = None

    def _forget(self) -> None:
        self.done = True
        if self.handler.operations_by_id.get(self.id) is self:
            del self.handler.operations_by_id[self.id]

    # The engine's Sink.

    def encode(self, items: Sequence[Item]) -> Any:
        prefix = self._prefix
        if self.handler.write_frames is not None:
            return b"".join(text_frame(prefix + item.payload + b"}") for item in items)
        return [(prefix + item.payload + b"}").decode() for item in items]

    async def write(self, encoded: Any) -> None:
        if self.handler.write_frames is not None:
            self.handler.write_frames(encoded)
            return
        for text in encoded:
            await self.handler.send_text(text)

    def is_open(self) -> bool:
        return not self.handler.closed

    async def send_result(self, result: ExecutionResult) -> None:
        payload: NextMessagePayload = {"data": result.data}
        if result.errors:
            payload["errors"] = [error.formatted for error in result.errors]
        if result.extensions:
            payload["extensions"] = result.extensions
        if not self.done:
            await self.handler.send_json({"id": self.id, "type": "next", "payload": payload})

    async def reject(self, result: PreExecutionError) -> None:
        errors = result.errors or []
        first = errors[0] if errors else None
        if isinstance(first, UnrunnableDocumentError):
            # The protocol closes the socket for a document that cannot be run at all.
            self._forget()
            await self.handler.websocket.close(code=BAD_REQUEST_CLOSE_CODE, reason=first.message)
            return
        await self.fail(errors)

    async def complete(self) -> None:
        if not self.done:
            self._forget()
            await self.handler.send_json({"id": self.id, "type": "complete"})

    async def fail(self, errors: list[GraphQLError]) -> None:
        if not self.done:
            self._forget()
            await self.handler.send_json(
                {"id": self.id, "type": "error", "payload": [e.formatted for e in errors]}  # type: ignore[typeddict-item]
            )

    async def abort(self) -> None:
        await self.handler.websocket.close(code=1011, reason="Internal server error")


class GraphQLTransportWSAdapter(BaseGraphQLTransportWSHandler[Any, Any]):
    """strawberry's graphql-transport-ws handler with its operations on the live engine."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.engine = get_engine(self.schema)
        self.operations_by_id: dict[str, TransportWSOperation] = {}
        self.write_frames = frame_writer(self.view.scope)  # type: ignore[attr-defined]
        self.closed = False
        self.last_heard: float | None = asyncio.get_running_loop().time()

    def viewer_id(self) -> int | None:
        user = self.view.scope.get("user")  # type: ignore[attr-defined]
        if user is not None and user.is_authenticated and user.is_active:
            return int(user.pk)
        return None

    async def send_json(self, message: dict[str, Any]) -> None:
        """Send one protocol message (shapes this module builds, not strawberry's types)."""
        await self.websocket.send_json(message)

    async def send_text(self, text: str) -> None:
        await self.view.send(text_data=text)  # type: ignore[attr-defined]

    async def handle_message(self, message: Message) -> None:
        self.last_heard = asyncio.get_running_loop().time()
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            if self.connection_init_timeout_task:
                self.connection_init_timeout_task.cancel()  # no longer needed
                self.connection_init_timeout_task = None
            keepalive_ticker().add(self)

    async def handle_pong(self, message: PongMessage) -> None:
        pass  # heard: that is all a pong is for

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if not self.connection_acknowledged:
            await self.websocket.close(code=4401, reason="Unauthorized")
            return
        operation_id = message["id"]
        if operation_id in self.operations_by_id:
            await self.websocket.close(
                code=4409, reason=f"Subscriber for {operation_id} already exists"
            )
            return
        limit = self.max_subscriptions_per_connection
        if limit is not None and len(self.operations_by_id) >= limit:
            await self.send_json(too_many_operations(operation_id, limit))
            return
        operation = self.operations_by_id[operation_id] = TransportWSOperation(self, operation_id)
        operation.task = asyncio.create_task(operation.run(dict(message["payload"])))

    async def handle_complete(self, message: CompleteMessage) -> None:
        operation = self.operations_by_id.pop(message["id"], None)
        if operation is not None:
            operation.stop()

    async def shutdown(self) -> None:
        self.closed = True
        keepalive_ticker().discard(self)
        for operation in list(self.operations_by_id.values()):
            operation.stop()
        self.operations_by_id.clear()
        await super().shutdown()

    async def send_keepalive(self) -> None:
        if self.write_frames is not None:
            self.write_frames(text_frame(PING_TEXT.encode()))
        else:
            await self.send_text(PING_TEXT)

    async def close_silent(self) -> None:
        await self.websocket.close(
            code=KEEPALIVE_TIMEOUT_CLOSE_CODE, reason=KEEPALIVE_TIMEOUT_REASON
        )
