"""The legacy graphql-ws adapter (subscriptions-transport-ws) over the live engine.

strawberry's handler keeps the connection's life (``connection_init``,
``connection_terminate``); ``start`` and ``stop`` run through the live engine, and the
process's keep-alive ticker sends ``ka``. This protocol runs subscriptions only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage,
    StartMessage,
    StopMessage,
)
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.types.graphql import OperationType

from backend.server.extensions import frame_writer, text_frame
from schema.errors import RATE_LIMITED, internal_error
from schema.live.engine import Item, Subscriber, get_engine
from schema.live.keepalive import keepalive_ticker

logger = logging.getLogger(__name__)

KEEPALIVE_TEXT = '{"type":"ka"}'
SUBSCRIPTIONS = (OperationType.SUBSCRIPTION,)


class GraphQLWSOperation:
    """One ``start``ed operation of a socket, and its sink in the engine."""

    def __init__(self, handler: GraphQLWSAdapter, operation_id: str) -> None:
        self.handler = handler
        self.id = operation_id
        self.task: asyncio.Task[None] | None = None
        self.subscriber: Subscriber | None = None
        self.done = False
        self._prefix = b'{"type":"data","id":' + json.dumps(operation_id).encode() + b',"payload":'
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
                allowed_operation_types=SUBSCRIPTIONS,
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
        elif self.done:
            handler.engine.end(subscriber)
        else:
            self.subscriber = subscriber

    def stop(self) -> None:
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
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [error.formatted for error in result.errors]
        if not self.done:
            await self.handler.send_json({"type": "data", "id": self.id, "payload": payload})

    async def reject(self, result: PreExecutionError) -> None:
        errors = result.errors or [GraphQLError("Invalid operation.")]
        if not self.done:
            self._forget()
            await self.handler.send_json(
                {"type": "error", "id": self.id, "payload": errors[0].formatted}  # type: ignore[typeddict-item]
            )

    async def complete(self) -> None:
        if not self.done:
            self._forget()
            await self.handler.send_json({"type": "complete", "id": self.id})

    async def fail(self, errors: list[GraphQLError]) -> None:
        # The protocol's error form: a ``data`` message with errors, then ``complete``.
        if not self.done:
            payload = {"data": None, "errors": [error.formatted for error in errors]}
            await self.handler.send_json({"type": "data", "id": self.id, "payload": payload})
            await self.complete()

    async def abort(self) -> None:
        await self.handler.websocket.close(code=1011, reason="Internal server error")


class GraphQLWSAdapter(BaseGraphQLWSHandler[Any, Any]):
    """strawberry's legacy graphql-ws handler with its subscriptions on the live engine."""

    last_heard: float | None = None  # legacy clients do not answer keep-alives

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keep_alive = False  # the process's ticker sends ``ka`` (one task for all)
        self.engine = get_engine(self.schema)
        self.operations_by_id: dict[str, GraphQLWSOperation] = {}
        self.write_frames = frame_writer(self.view.scope)  # type: ignore[attr-defined]
        self.closed = False

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

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            keepalive_ticker().add(self)

    async def handle_start(self, message: StartMessage) -> None:
        if not self.connection_acknowledged:
            await self.websocket.close(code=4401, reason="Unauthorized")
            return
        operation_id = message["id"]
        previous = self.operations_by_id.pop(operation_id, None)
        if previous is not None:  # the protocol lets a client reuse an id: stop the old one
            previous.stop()
        limit = self.max_subscriptions_per_connection
        if limit is not None and len(self.operations_by_id) >= limit:
            message_text = (
                f"At most {limit} operations may run at once on one socket; stop one first."
            )
            error = GraphQLError(message_text, extensions={"code": RATE_LIMITED})
            await self.send_message(
                {"type": "error", "id": operation_id, "payload": error.formatted}
            )
            return
        operation = self.operations_by_id[operation_id] = GraphQLWSOperation(self, operation_id)
        operation.task = asyncio.create_task(operation.run(dict(message["payload"])))

    async def handle_stop(self, message: StopMessage) -> None:
        operation = self.operations_by_id.pop(message["id"], None)
        if operation is not None:
            operation.stop()
            await self.send_message({"type": "complete", "id": message["id"]})

    async def cleanup(self) -> None:
        self.closed = True
        keepalive_ticker().discard(self)
        for operation in list(self.operations_by_id.values()):
            operation.stop()
        self.operations_by_id.clear()
        await super().cleanup()

    async def send_keepalive(self) -> None:
        if self.write_frames is not None:
            self.write_frames(text_frame(KEEPALIVE_TEXT.encode()))
        else:
            await self.send_text(KEEPALIVE_TEXT)

    async def close_silent(self) -> None:  # never called: ``last_heard`` is None
        await self.websocket.close(code=1000, reason="")
