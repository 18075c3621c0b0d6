"""Shared execution of the ``activity`` subscription: once per shape, not per subscriber.

A *shape* is a subscription document with its operation name and variables. For each
activity and each shape that wants it, the selection is executed once per viewer
class (anonymous, another signed-in user, the author), the result is encoded to JSON
once, and every subscriber of that class gets the same bytes behind its own message
id. Executing for "another signed-in user" uses a viewer that is nobody in
particular, so fields that depend on who exactly is looking resolve as for any
non-author: never more than the real viewer may see.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from graphql import DocumentNode, GraphQLError, OperationDefinitionNode
from graphql.execution.executor import Executor
from graphql.execution.values import get_argument_values

from events.models import Activity, Event, Visibility
from schema.errors import coded
from schema.events import ActivityType
from schema.filters import ActivityFilter
from schema.ids import decode_pk

logger = logging.getLogger(__name__)

ANONYMOUS, OTHER, AUTHOR = "anonymous", "other", "author"
NOBODY_IN_PARTICULAR = -1  # viewer id standing for "a signed-in user who is not the author"

SendText = Callable[[str], Awaitable[None]]


@dataclass
class _Request:
    """The part of a request strawberry-django reads to find the viewer."""

    user: User | AnonymousUser


def _viewer_for(relation: str, actor_id: int) -> User | AnonymousUser:
    if relation == ANONYMOUS:
        return AnonymousUser()
    viewer = User(pk=actor_id if relation == AUTHOR else NOBODY_IN_PARTICULAR, is_active=True)
    return viewer


class Shape:
    """One distinct subscription document + variables, executed once per viewer class."""

    def __init__(
        self,
        key: str,
        schema: Any,
        document: DocumentNode,
        operation_name: str | None,
        variables: dict[str, Any] | None,
        wanted: ActivityFilter,
    ) -> None:
        self.key = key
        self.schema = schema
        self.document = document
        self.operation_name = operation_name
        self.variables = variables
        self.wanted = wanted
        self.subscriptions: dict[int | None, set[SharedSubscription]] = collections.defaultdict(set)
        self.executions = 0

    def accepts(self, activity: Activity) -> bool:
        """Whether the activity matches the shape's ``kinds``/``actorId`` (not visibility)."""
        return ActivityFilter(
            viewer_id=activity.actor_id, kinds=self.wanted.kinds, actor_id=self.wanted.actor_id
        ).accepts(activity)

    async def execute(self, activity: Activity, event: Event | None, relation: str) -> str:
        """The JSON ``payload`` of a result for one viewer class, encoded once."""
        self.executions += 1
        context = {"request": _Request(user=_viewer_for(relation, activity.actor_id))}
        executor = Executor.build(
            self.schema,
            self.document,
            context_value=context,
            raw_variable_values=self.variables,
            operation_name=self.operation_name,
        )
        if isinstance(executor, list):  # validated at subscribe time; cannot happen
            raise GraphQLError("Invalid subscription variables.")
        root = ActivityType(activity=activity, loaded_event=event)
        result: Any = executor.build_per_event_executor(root).execute_operation(False)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            result = await result
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [coded(error).formatted for error in result.errors]
        return json.dumps(payload, separators=(",", ":"))


@dataclass(eq=False)
class SharedSubscription:
    """One subscriber of a shape: a socket, a message id and a viewer."""

    shape: Shape
    viewer_id: int | None
    frame_prefix: str  # '{"id":"1","type":"next","payload":'
    send_text: SendText
    live: bool = False
    last_id: int = 0
    overflowed: bool = False
    # Live activities that arrive while the replay runs; none once live (saves memory).
    pending: collections.deque[tuple[int, str]] | None = None

    async def offer(self, activity_id: int, payload: str) -> None:
        """Send now when live; queue (bounded) while the replay is still running."""
        if not self.live:
            if self.pending is None:
                self.pending = collections.deque()
            if len(self.pending) >= settings.PULSE_SUBSCRIBER_QUEUE_SIZE:
                self.overflowed = True
            else:
                self.pending.append((activity_id, payload))
            return
        if activity_id <= self.last_id:
            return
        self.last_id = activity_id
        await self.send_text(self.frame_prefix + payload + "}")


class SharedFanout:
    """Subscriptions grouped by shape; the hub hands it each activity once."""

    def __init__(self) -> None:
        self.shapes: dict[str, Shape] = {}
        self.count = 0

    def shape_for(self, key: str, build: Callable[[], Shape]) -> Shape:
        shape = self.shapes.get(key)
        if shape is None:
            shape = self.shapes[key] = build()
        return shape

    def add(self, subscription: SharedSubscription) -> None:
        subscription.shape.subscriptions[subscription.viewer_id].add(subscription)
        self.shapes.setdefault(subscription.shape.key, subscription.shape)
        self.count += 1

    def remove(self, subscription: SharedSubscription) -> None:
        shape = subscription.shape
        viewers = shape.subscriptions.get(subscription.viewer_id)
        if viewers is not None and subscription in viewers:
            viewers.discard(subscription)
            self.count -= 1
            if not viewers:
                del shape.subscriptions[subscription.viewer_id]
        if not shape.subscriptions:
            self.shapes.pop(shape.key, None)

    async def deliver(self, activity: Activity, event: Event | None) -> None:
        """Execute once per shape and viewer class, then write to every subscriber."""
        activity_id = activity.pk
        for shape in list(self.shapes.values()):
            if not shape.accepts(activity):
                continue
            for relation, subscriptions in _audiences(shape, activity):
                if not subscriptions:
                    continue
                payload = await shape.execute(activity, event, relation)
                for subscription in subscriptions:
                    await subscription.offer(activity_id, payload)


def _audiences(shape: Shape, activity: Activity) -> list[tuple[str, list[SharedSubscription]]]:
    by_viewer = shape.subscriptions
    author = list(by_viewer.get(activity.actor_id, ()))
    if activity.visibility != Visibility.PUBLIC:
        return [(AUTHOR, author)]
    anonymous = list(by_viewer.get(None, ()))
    others = [
        subscription
        for viewer_id, subscriptions in by_viewer.items()
        if viewer_id is not None and viewer_id != activity.actor_id
        for subscription in subscriptions
    ]
    return [(ANONYMOUS, anonymous), (OTHER, others), (AUTHOR, author)]


def activity_root_field(
    document: DocumentNode, operation_name: str | None
) -> tuple[OperationDefinitionNode, Any] | None:
    """The operation and its only root field when it is ``subscription { activity }``."""
    from graphql import FieldNode, get_operation_ast

    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation.value != "subscription":
        return None
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    node = selections[0]
    if node.name.value != "activity" or node.directives:
        return None
    return operation, node


def activity_filter(
    schema: Any, field_node: Any, variables: Any, viewer_id: int | None
) -> tuple[ActivityFilter, str | None]:
    """The filter and the ``after`` cursor a subscription asked for.

    ``variables`` are graphql-core's coerced ``VariableValues``.
    """
    field_def = schema.subscription_type.fields["activity"]
    arguments = get_argument_values(field_def, field_node, variables)
    kinds = arguments.get("kinds")
    actor_id = arguments.get("actorId")
    wanted = ActivityFilter(
        viewer_id=viewer_id,
        kinds=(
            frozenset(k.value if hasattr(k, "value") else k for k in kinds)
            if kinds is not None
            else None
        ),
        actor_id=(decode_pk(actor_id, ["User"]) or -1) if actor_id else None,
    )
    return wanted, arguments.get("after")
