"""What a subscription field asks the live engine to stream.

A subscription field's resolver is the one place its arguments are decoded: it files
a :class:`LiveStream` (``ActivityStream`` here; notifications and presence beside their
types) with :func:`file_stream` and yields nothing itself. The engine
(``schema.live.engine``) replays and delivers what was filed, executing the
subscription once per entry, shape and audience.

A stream names the :class:`~schema.live.hub.Log` it streams from and answers, for one
entry of it: its position, who may see it (``audience``), the root value and context
it is executed with, and its cursor.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import FieldNode, VariableNode
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from events import selectors
from events.cursors import decode_activity_cursor, encode_activity_cursor
from events.publisher import ACTIVITY_GROUP
from events.selectors import ActivityWithEvent
from events.visibility import Audience, audience
from schema.context import AudienceContext, Info
from schema.errors import needs_a_stream
from schema.events import ActivityType
from schema.live.hub import STATE_POSITION, Log


class LiveStream(Protocol):
    """What the engine needs of a subscription field's decoded arguments."""

    log: ClassVar[Log]

    @property
    def after_id(self) -> int | None:
        """Replay after this position; ``None``: live only."""

    def matches(self, entry: Any) -> bool:
        """Whether the entry is one the subscription asked for (visibility aside)."""

    def audience(self, viewer_id: int | None, entry: Any) -> Audience | None:
        """How ``viewer_id`` stands to the entry; ``None`` when it may not see it."""

    def position(self, entry: Any) -> int:
        """The entry's position in its log (``STATE_POSITION`` for state)."""

    def cursor(self, position: int) -> str:
        """What a client passes back to resume after ``position`` ("" for state)."""

    def resume_after(self, cursor: str) -> int | None:
        """The position a resume cursor (SSE's ``Last-Event-ID``) points at, if valid."""

    def replay_page(self, *, viewer_id: int | None, after_id: int, limit: int) -> list[Any]:
        """The next entries after ``after_id`` that ``viewer_id`` may see."""

    def root(self, entry: Any) -> Any:
        """The root value one entry is executed on."""

    def context(self, entry: Any, seen_as: Audience) -> AudienceContext:
        """The context one audience of an entry is executed with."""


ACTIVITY_LOG = Log(
    name="activity",
    group=ACTIVITY_GROUP,
    position=lambda row: row[0].pk,
    written_at=lambda row: row[0].occurred_at.timestamp(),
    read=lambda *, after_id, limit, changed: selectors.log_after(after_id=after_id, limit=limit),
    latest_id=selectors.latest_activity_id,
)


@dataclass(frozen=True)
class ActivityStream:
    """The ``activity`` subscription's arguments, decoded once."""

    log: ClassVar[Log] = ACTIVITY_LOG

    after_id: int | None  # replay the log after this id; ``None``: live only
    kinds: frozenset[str] | None = None
    actor_ids: frozenset[int] | None = None  # empty: an actorId that names nobody

    def matches(self, entry: ActivityWithEvent) -> bool:
        """Whether the activity is one the subscription asked for (visibility aside)."""
        activity = entry[0]
        if self.kinds is not None and activity.kind not in self.kinds:
            return False
        return self.actor_ids is None or activity.actor_id in self.actor_ids

    @staticmethod
    def audience(viewer_id: int | None, entry: ActivityWithEvent) -> Audience | None:
        """The visibility rule (``events.visibility``) for the entry's activity."""
        return audience(viewer_id, entry[0])

    @staticmethod
    def position(entry: ActivityWithEvent) -> int:
        """The activity's id."""
        return entry[0].pk

    @staticmethod
    def cursor(position: int) -> str:
        """The activity cursor of a log id."""
        return encode_activity_cursor(position) if position != STATE_POSITION else ""

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
    def root(entry: ActivityWithEvent) -> Any:
        """The root value one activity is executed on."""
        return ActivityType(activity=entry[0], loaded_event=entry[1])

    @staticmethod
    def context(entry: ActivityWithEvent, seen_as: Audience) -> AudienceContext:
        """As the activity's actor, any signed-in user, or anyone (see ``Audience``)."""
        return AudienceContext(
            viewer_id=entry[0].actor_id if seen_as is Audience.ACTOR else None,
            signed_in=seen_as is not Audience.ANONYMOUS,
        )


@dataclass
class FiledStream:
    """What the root field filed while the engine opened an operation."""

    stream: LiveStream
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


def file_stream(info: Info, stream: LiveStream, cursor_argument: str = "after") -> None:
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
