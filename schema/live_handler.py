"""graphql-transport-ws handler routing ``activity`` subscriptions to shared execution.

Anything else (queries, mutations, other subscriptions, invalid documents) goes through
strawberry's own handler unchanged, which also reports every error the usual way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    VariableNode,
    Visitor,
    specified_rules,
    validate,
    visit,
)
from graphql.error import GraphQLSyntaxError
from graphql.execution.values import get_variable_values
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    ErrorMessage,
    SubscribeMessage,
)

from backend.metrics import DELIVERIES_LIVE, DELIVERIES_REPLAY, DROPPED_QUEUE_FULL
from backend.wsframes import frame_writer
from schema.errors import INTERNAL, RATE_LIMITED, slow_consumer
from schema.events import parse_activity_cursor
from schema.filters import ActivityFilter, replay_log
from schema.hub import get_hub
from schema.ids import encode_activity_cursor
from schema.limits import limit_rules, parse_limited
from schema.live import (
    Shape,
    SharedSubscription,
    activity_filter,
    activity_root_field,
    relation_to,
)

logger = logging.getLogger(__name__)


def too_many_operations(operation_id: str, limit: int) -> ErrorMessage:
    """The error answering an operation past ``PULSE_MAX_OPERATIONS_PER_SOCKET``."""
    message = f"At most {limit} operations may run at once on one socket; complete one first."
    error = GraphQLError(message, extensions={"code": RATE_LIMITED})
    return {"id": operation_id, "type": "error", "payload": [error.formatted]}


@dataclasses.dataclass(frozen=True)
class ParsedActivitySubscription:
    """A validated ``subscription { activity }`` document, shared by every socket using it."""

    document: DocumentNode
    operation: OperationDefinitionNode
    field: FieldNode
    # The variable that only feeds ``activity(after:)``: its value picks where the replay
    # starts but cannot change a live result, so it is left out of the shape's key.
    after_variable: str | None


@functools.lru_cache(maxsize=256)
def parse_activity_subscription(
    graphql_schema: GraphQLSchema, query: str, operation_name: str | None
) -> ParsedActivitySubscription | None:
    """Parse and validate once per distinct document; ``None`` when not shareable."""
    try:
        document = parse_limited(query)
    except GraphQLSyntaxError:
        return None
    if validate(graphql_schema, document, (*specified_rules, *limit_rules())):
        return None  # strawberry's handler runs it and reports why it is refused
    found = activity_root_field(document, operation_name)
    if found is None:
        return None
    operation_node, field_node = found
    after_variable = None
    for argument in field_node.arguments or ():
        if argument.name.value == "after" and isinstance(argument.value, VariableNode):
            name = argument.value.name.value
            if _variable_uses(document, name) == 1:
                after_variable = name
    return ParsedActivitySubscription(document, operation_node, field_node, after_variable)


def _variable_uses(document: DocumentNode, name: str) -> int:
    """How many times ``$name`` is used in the document (its definitions not counted)."""
    counter = _VariableUseCounter(name)
    visit(document, counter)
    return counter.uses


class _VariableUseCounter(Visitor):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name, self.uses = name, 0

    def enter_variable_definition(self, *_: Any) -> Any:
        return self.SKIP

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        self.uses += node.name.value == self.name


class SharedOperation(Operation[Any, Any]):
    """An operation served by shared execution; ``subscription`` is its fan-out entry."""

    __slots__ = ("subscription",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subscription: SharedSubscription | None = None


class SharedActivityTransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    """strawberry's graphql-transport-ws handler with shared ``activity`` execution.

    A shared operation has a task only while it subscribes and replays; once live it is
    just an entry in the hub's fan-out (no task, no queue), removed by ``complete``, by
    an ``error`` it was sent, or by the socket closing.
    """

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations:
            limit = self.max_subscriptions_per_connection
            if limit is not None and len(self.operations) >= limit:
                await self.send_message(too_many_operations(message["id"], limit))
                return
        plan = self._plan(message) if self.connection_acknowledged else None
        if plan is None or message["id"] in self.operations:
            # strawberry's handler runs it, or answers with the protocol's error.
            await super().handle_subscribe(message)
            return
        parsed, variables, shape_key, after_id, wanted = plan
        operation = SharedOperation(
            self,
            message["id"],
            "",
            variables,
            parsed.operation.name and parsed.operation.name.value,
        )
        self.operations[message["id"]] = operation
        operation.task = asyncio.create_task(
            self._start_shared(operation, parsed, shape_key, after_id, wanted)
        )
        operation.task.add_done_callback(self._task_done)

    def _plan(
        self, message: SubscribeMessage
    ) -> tuple[ParsedActivitySubscription, dict[str, Any], str, int | None, ActivityFilter] | None:
        payload = message["payload"]
        query, variables = payload.get("query"), payload.get("variables") or {}
        operation_name = payload.get("operationName")
        if not isinstance(query, str) or not isinstance(variables, dict):
            return None
        if operation_name is not None and not isinstance(operation_name, str):
            return None
        graphql_schema = self.schema._schema  # type: ignore[attr-defined]
        parsed = parse_activity_subscription(graphql_schema, query, operation_name)
        if parsed is None:
            return None
        coerced = get_variable_values(
            graphql_schema, parsed.operation.variable_definitions or (), variables
        )
        if isinstance(coerced, list):
            return None
        try:
            wanted, after = activity_filter(graphql_schema, parsed.field, coerced, None)
            after_id = parse_activity_cursor(after) if after is not None else None
        except GraphQLError:
            return None
        live_variables = {k: v for k, v in variables.items() if k != parsed.after_variable}
        shape_key = json.dumps([query, operation_name, live_variables], sort_keys=True, default=str)
        return parsed, variables, shape_key, after_id, wanted

    def _viewer_id(self) -> int | None:
        user = self.websocket.ws_consumer.scope.get("user")  # type: ignore[attr-defined]
        if user is not None and user.is_authenticated and user.is_active:
            return int(user.pk)
        return None

    async def _send_text(self, text: str) -> None:
        await self.websocket.ws_consumer.send(text_data=text)  # type: ignore[attr-defined]

    async def _start_shared(
        self,
        operation: SharedOperation,
        parsed: ParsedActivitySubscription,
        shape_key: str,
        after_id: int | None,
        wanted: ActivityFilter,
    ) -> None:
        """Join the shape, replay from ``after``, then go live; the task ends there."""
        hub = get_hub()
        shape = hub.fanout.shape_for(
            shape_key,
            lambda: Shape(
                shape_key,
                self.schema._schema,  # type: ignore[attr-defined]
                parsed.document,
                operation.operation_name,
                operation.variables,
                wanted,
            ),
        )
        subscription = operation.subscription = SharedSubscription(
            shape=shape,
            viewer_id=self._viewer_id(),
            frame_prefix=b'{"id":'
            + json.dumps(operation.id).encode()
            + b',"type":"next","payload":',
            send_text=self._send_text,
            write_frames=frame_writer(self.websocket.ws_consumer.scope),  # type: ignore[attr-defined]
        )
        try:
            await hub.subscribe_shared(subscription)
            last_id = await self._replay(subscription, after_id)
            while subscription.pending:  # what arrived live during the replay
                activity_id, payload = subscription.pending.popleft()
                if activity_id > last_id:
                    last_id = activity_id
                    await subscription.send([(activity_id, payload)])
                    DELIVERIES_LIVE.inc()
            if subscription.overflowed:
                DROPPED_QUEUE_FULL.inc()
                await operation.send_initial_errors(
                    [slow_consumer(encode_activity_cursor(last_id))]
                )
                return
            subscription.pending = None
            subscription.last_id = last_id
            subscription.live = True  # no await since the queue was seen empty
            operation.task = None  # nothing to cancel any more; the task ends here
        except Exception:
            logger.exception("Shared subscription %s failed to start", operation.id)
            self._release(operation)
            with contextlib.suppress(Exception):
                await operation.send_initial_errors(
                    [GraphQLError("Internal server error.", extensions={"code": INTERNAL})]
                )
        except BaseException:
            self._release(operation)
            raise

    async def _replay(self, subscription: SharedSubscription, after_id: int | None) -> int:
        """Send the log after ``after_id`` (executed for this viewer); the last id sent."""
        if after_id is None:
            return 0
        shape, last_id = subscription.shape, after_id
        wanted = dataclasses.replace(shape.wanted, viewer_id=subscription.viewer_id)
        async for activity, event in replay_log(wanted, after_id):
            relation = relation_to(subscription.viewer_id, activity)
            if relation is not None:  # the log query already left out what it may not see
                payload = await shape.execute(activity, event, relation)
                await subscription.send([(activity.pk, payload)])
                DELIVERIES_REPLAY.inc()
            last_id = activity.pk
        return last_id

    def _release(self, operation: Operation[Any, Any] | None) -> None:
        """Take a shared operation out of the fan-out (idempotent)."""
        if isinstance(operation, SharedOperation) and operation.subscription is not None:
            get_hub().unsubscribe_shared(operation.subscription)
            operation.subscription = None

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()  # its timer is no longer needed
            self.connection_init_timeout_task = None

    async def cleanup_operation(self, operation_id: str) -> None:
        """``complete`` from the client, or the socket closing."""
        operation = self.operations.get(operation_id)
        if isinstance(operation, SharedOperation) and operation.task is None:
            self._release(self.operations.pop(operation_id))  # live: no task to cancel
            return
        self._release(operation)
        await super().cleanup_operation(operation_id)

    def forget_id(self, id: str) -> None:
        """The operation ended with an ``error`` or ``complete`` sent to the client."""
        self._release(self.operations.get(id))
        super().forget_id(id)
