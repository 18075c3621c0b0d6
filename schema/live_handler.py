"""graphql-transport-ws handler routing ``activity`` subscriptions to shared execution.

Anything else (queries, mutations, other subscriptions, invalid documents) goes through
strawberry's own handler unchanged, which also reports every error the usual way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any

from graphql import GraphQLError, parse, validate
from graphql.error import GraphQLSyntaxError
from graphql.execution.values import get_variable_values
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage

from schema.errors import slow_consumer
from schema.events import parse_activity_cursor
from schema.filters import replay_log
from schema.hub import get_hub
from schema.ids import encode_activity_cursor
from schema.live import (
    ANONYMOUS,
    AUTHOR,
    OTHER,
    Shape,
    SharedSubscription,
    activity_filter,
    activity_root_field,
)

logger = logging.getLogger(__name__)


class SharedActivityTransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    """strawberry's graphql-transport-ws handler with shared ``activity`` execution."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        plan = self._plan(message) if self.connection_acknowledged else None
        if (
            plan is None
            or message["id"] in self.operations
            or (
                self.max_subscriptions_per_connection is not None
                and len(self.operations) >= self.max_subscriptions_per_connection
            )
        ):
            # strawberry's handler runs it, or answers with the protocol's error.
            await super().handle_subscribe(message)
            return
        payload = message["payload"]
        operation: Operation[Any, Any] = Operation(
            self,
            message["id"],
            payload["query"],
            payload.get("variables"),
            payload.get("operationName"),
        )
        operation.task = asyncio.create_task(self._run_shared(operation, plan))
        operation.task.add_done_callback(self._task_done)
        self.operations[message["id"]] = operation

    def _plan(self, message: SubscribeMessage) -> dict[str, Any] | None:
        payload = message["payload"]
        query, variables = payload.get("query"), payload.get("variables") or {}
        if not isinstance(query, str) or not isinstance(variables, dict):
            return None
        graphql_schema = self.schema._schema  # type: ignore[attr-defined]
        try:
            document = parse(query)
        except GraphQLSyntaxError:
            return None
        if validate(graphql_schema, document):
            return None
        found = activity_root_field(document, payload.get("operationName"))
        if found is None:
            return None
        operation_node, field_node = found
        coerced = get_variable_values(
            graphql_schema, operation_node.variable_definitions or (), variables
        )
        if isinstance(coerced, list):
            return None
        try:
            wanted, after = activity_filter(graphql_schema, field_node, coerced, None)
            after_id = parse_activity_cursor(after) if after is not None else None
        except GraphQLError:
            return None
        key = json.dumps(
            [query, payload.get("operationName"), variables], sort_keys=True, default=str
        )
        return {
            "key": key,
            "document": document,
            "wanted": wanted,
            "after_id": after_id,
            "schema": graphql_schema,
        }

    def _viewer_id(self) -> int | None:
        user = self.websocket.ws_consumer.scope.get("user")  # type: ignore[attr-defined]
        if user is not None and user.is_authenticated and user.is_active:
            return int(user.pk)
        return None

    async def _run_shared(self, operation: Operation[Any, Any], plan: dict[str, Any]) -> None:
        hub = get_hub()
        viewer_id = self._viewer_id()
        shape = hub.fanout.shape_for(
            plan["key"],
            lambda: Shape(
                plan["key"],
                plan["schema"],
                plan["document"],
                operation.operation_name,
                operation.variables,
                plan["wanted"],
            ),
        )
        consumer = self.websocket.ws_consumer  # type: ignore[attr-defined]

        async def send_text(text: str) -> None:
            await consumer.send(text_data=text)

        subscription = SharedSubscription(
            shape=shape,
            viewer_id=viewer_id,
            frame_prefix='{"id":' + json.dumps(operation.id) + ',"type":"next","payload":',
            send_text=send_text,
        )
        await hub.subscribe_shared(subscription)
        logger.debug("Shared subscription %s on shape of %d", operation.id, len(hub.fanout.shapes))
        try:
            last_id = await self._replay(subscription, plan["after_id"])
            while subscription.pending:  # what arrived live during the replay
                activity_id, payload = subscription.pending.popleft()
                if activity_id > last_id:
                    last_id = activity_id
                    await send_text(subscription.frame_prefix + payload + "}")
            if subscription.overflowed:
                await operation.send_initial_errors(
                    [slow_consumer(encode_activity_cursor(last_id))]
                )
                return
            subscription.last_id = last_id
            subscription.live = True  # no await since the queue was seen empty
            await asyncio.Event().wait()  # until `complete` or the socket closes
        finally:
            hub.unsubscribe_shared(subscription)

    async def _replay(self, subscription: SharedSubscription, after_id: int | None) -> int:
        """Send the log after ``after_id`` (executed for this viewer); the last id sent."""
        if after_id is None:
            return 0
        shape, last_id = subscription.shape, after_id
        wanted = dataclasses.replace(shape.wanted, viewer_id=subscription.viewer_id)
        async for activity, event in replay_log(wanted, after_id):
            if subscription.viewer_id is None:
                relation = ANONYMOUS
            elif subscription.viewer_id == activity.actor_id:
                relation = AUTHOR
            else:
                relation = OTHER
            payload = await shape.execute(activity, event, relation)
            await subscription.send_text(subscription.frame_prefix + payload + "}")
            last_id = activity.pk
        return last_id
