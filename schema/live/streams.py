"""What a subscription field asks the live engine to stream.

A subscription field's resolver is the one place its arguments are decoded: it files
an :class:`ActivityStream` (or, later, another stream) with :func:`file_stream` and
yields nothing itself. The engine (``schema.live.engine``) replays and delivers what
was filed, executing the subscription once per activity, shape and audience.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import FieldNode, VariableNode
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from events import selectors
from events.cursors import decode_activity_cursor
from events.models import Activity, Event
from events.selectors import ActivityWithEvent
from schema.context import Info
from schema.errors import needs_a_stream
from schema.events import ActivityType


@dataclass(frozen=True)
class ActivityStream:
    """The ``activity`` subscription's arguments, decoded once."""

    after_id: int | None  # replay the log after this id; ``None``: live only
    kinds: frozenset[str] | None = None
    actor_ids: frozenset[int] | None = None  # empty: an actorId that names nobody

    def matches(self, activity: Activity) -> bool:
        """Whether the activity is one the subscription asked for (visibility aside)."""
        if self.kinds is not None and activity.kind not in self.kinds:
            return False
        return self.actor_ids is None or activity.actor_id in self.actor_ids

    @staticmethod
    def resume_after(cursor: str) -> int | None:
        """The log id a resume cursor (SSE's ``Last-Event-ID``) points at, if valid."""
        return decode_activity_cursor(cursor)

    def replay_page(
        self, *, viewer_id: int | None, after_id: int, limit: int
    ) -> list[ActivityWithEvent]:
        """The next page of the log after ``after_id`` that ``viewer_id`` may see."""
        if self.actor_ids is not None and not self.actor_ids:
            return []
        return selectors.activities_after(
            viewer_id=viewer_id,
            after_id=after_id,
            limit=limit,
            kinds=self.kinds,
            actor_id=next(iter(self.actor_ids)) if self.actor_ids else None,
        )

    @staticmethod
    def root(activity: Activity, event: Event | None) -> Any:
        """The root value one activity is executed on."""
        return ActivityType(activity=activity, loaded_event=event)


@dataclass
class FiledStream:
    """What the root field filed while the engine opened an operation."""

    stream: ActivityStream
    # A variable that feeds only the replay cursor: left out of the shape's key, so
    # subscribers resuming from different cursors share one shape.
    cursor_variable: str | None


_filed: contextvars.ContextVar[list[FiledStream] | None] = contextvars.ContextVar(
    "pulse_live_filed", default=None
)


def collecting() -> tuple[list[FiledStream], Callable[[], None]]:
    """Start collecting what subscription fields file in this task; returns the list
    and a function that stops collecting."""
    filed: list[FiledStream] = []
    token = _filed.set(filed)
    return filed, lambda: _filed.reset(token)


class NotServedByEngineError(RuntimeError):
    """A live field was run outside the live engine (for example by another handler)."""


def file_stream(info: Info, stream: ActivityStream, cursor_argument: str = "after") -> None:
    """File what a subscription field streams, for the engine that runs it."""
    filed = _filed.get()
    if filed is None:
        raise NotServedByEngineError("Live subscriptions are served by schema.live only.")
    filed.append(FiledStream(stream, _cursor_variable(info, cursor_argument)))


def _cursor_variable(info: Info, argument: str) -> str | None:
    """The variable given as the root field's ``argument`` if it is used nowhere else."""
    name: str | None = None
    for selection in info.operation.selection_set.selections:
        if not isinstance(selection, FieldNode) or selection.name.value != info.field_name:
            continue
        for node in selection.arguments or ():
            if node.name.value == argument and isinstance(node.value, VariableNode):
                name = node.value.name.value
    query = info.query
    if name is None or query is None:
        return None
    # Its definition and this one use, and nothing more (a comment or string that
    # mentions it only costs sharing).
    return name if len(re.findall(rf"\${name}\b", query)) == 2 else None


def decoded_ids(values: Collection[str], decode: Callable[[str], int | None]) -> frozenset[int]:
    """The primary keys in global ids; ids that decode to nothing are dropped."""
    return frozenset(pk for value in values if (pk := decode(value)) is not None)


class SubscriptionsNeedAStream(SchemaExtension):
    """Refuse a subscription sent where no stream can carry it (a plain HTTP request).

    The live engine executes subscriptions on an activity as root value; without one
    (strawberry's HTTP view) the operation is answered with a coded error saying which
    transports stream, instead of running the selection on nothing.
    """

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.operation_type is OperationType.SUBSCRIPTION and context.root_value is None:
            context.result = GraphQLExecutionResult(data=None, errors=[needs_a_stream()])
        yield
