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

from backend.metrics import DELIVERIES_LIVE
from backend.wsframes import FrameWriter, text_frame
from events.models import Activity, Event, Visibility
from schema.errors import coded
from schema.events import ActivityType
from schema.filters import ActivityFilter
from schema.ids import decode_pk

logger = logging.getLogger(__name__)

ANONYMOUS, OTHER, AUTHOR = "anonymous", "other", "author"
FANOUT_SLICE = 128  # socket writes between returns to the event loop
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

    async def execute(self, activity: Activity, event: Event | None, relation: str) -> bytes:
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
        return json.dumps(payload, separators=(",", ":")).encode()


@dataclass(eq=False)
class SharedSubscription:
    """One subscriber of a shape: a socket, a message id and a viewer.

    Frames go out through ``write_frames`` (the server's pre-encoded frame writer,
    ``backend.wsframes``) when the server offers it, else one ASGI message each
    through ``send_text``.
    """

    shape: Shape
    viewer_id: int | None
    frame_prefix: bytes  # b'{"id":"1","type":"next","payload":'
    send_text: SendText
    write_frames: FrameWriter | None = None
    live: bool = False
    last_id: int = 0
    overflowed: bool = False
    removed: bool = False  # set when it leaves the fan-out; a delivery in flight skips it
    # Live activities that arrive while the replay runs; none once live (saves memory).
    pending: collections.deque[tuple[int, bytes]] | None = None

    async def offer(self, items: list[tuple[int, bytes]], frames: FrameCache) -> int:
        """Send ``(activity id, payload)`` items when live; queue them (bounded) while the
        replay still runs. ``frames`` caches encoded frames for subscribers that get the
        same items under the same message id. Returns how many messages were written."""
        if self.removed:
            return 0
        if not self.live:
            if self.pending is None:
                self.pending = collections.deque()
            for item in items:
                if len(self.pending) >= settings.PULSE_SUBSCRIBER_QUEUE_SIZE:
                    self.overflowed = True
                    return 0
                self.pending.append(item)
            return 0
        if items[0][0] <= self.last_id:
            items = [item for item in items if item[0] > self.last_id]
            if not items:
                return 0
        self.last_id = items[-1][0]
        await self.send(items, frames)
        return len(items)

    async def send(self, items: list[tuple[int, bytes]], frames: FrameCache | None = None) -> None:
        """Write one ``next`` message per item, as a single write when the server allows."""
        prefix = self.frame_prefix
        if self.write_frames is None:
            for _, payload in items:
                await self.send_text((prefix + payload + b"}").decode())
            return
        key = (prefix, items[0][0], len(items))
        encoded = frames.get(key) if frames is not None else None
        if encoded is None:
            encoded = b"".join(text_frame(prefix + payload + b"}") for _, payload in items)
            if frames is not None:
                frames[key] = encoded
        self.write_frames(encoded)


FrameCache = dict[tuple[bytes, int, int], bytes]


class SharedFanout:
    """Subscriptions grouped by shape; the hub hands it each batch of activities once."""

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
        subscription.removed = True
        shape = subscription.shape
        viewers = shape.subscriptions.get(subscription.viewer_id)
        if viewers is not None and subscription in viewers:
            viewers.discard(subscription)
            self.count -= 1
            if not viewers:
                del shape.subscriptions[subscription.viewer_id]
        if not shape.subscriptions:
            self.shapes.pop(shape.key, None)

    async def deliver(self, rows: list[tuple[Activity, Event | None]]) -> None:
        """Execute once per shape, activity and viewer class, then write to every subscriber.

        Each subscriber gets everything ``rows`` holds for it in one write, and
        subscribers with the same viewer, shape and message id get the same bytes.
        Deliveries are counted once per batch (``pulse_deliveries_total``), not per write.
        """
        written = delivered = 0
        for shape in list(self.shapes.values()):
            accepted = [(activity, event) for activity, event in rows if shape.accepts(activity)]
            if not accepted:
                continue
            payloads: dict[tuple[int, str], bytes] = {}
            for viewer_id, subscriptions in list(shape.subscriptions.items()):
                items: list[tuple[int, bytes]] = []
                for activity, event in accepted:
                    relation = relation_to(viewer_id, activity)
                    if relation is None:
                        continue
                    payload = payloads.get((activity.pk, relation))
                    if payload is None:
                        payload = await shape.execute(activity, event, relation)
                        payloads[(activity.pk, relation)] = payload
                    items.append((activity.pk, payload))
                if not items:
                    continue
                frames: FrameCache = {}
                for subscription in list(subscriptions):
                    delivered += await subscription.offer(items, frames)
                    written += 1
                    if written % FANOUT_SLICE == 0:
                        # Let the loop run what is ready (requests waiting on the
                        # database thread) between slices of socket writes.
                        await asyncio.sleep(0)
        if delivered:
            DELIVERIES_LIVE.inc(delivered)


def relation_to(viewer_id: int | None, activity: Activity) -> str | None:
    """How a viewer stands to an activity, or ``None`` when it may not see it."""
    if viewer_id is not None and viewer_id == activity.actor_id:
        return AUTHOR
    if activity.visibility != Visibility.PUBLIC:
        return None
    return ANONYMOUS if viewer_id is None else OTHER


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
