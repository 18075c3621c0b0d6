"""GraphQL surface of events and the activity log: types, queries and mutations."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar, cast

import strawberry
import strawberry_django
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from strawberry import relay
from strawberry_django.relay import DjangoListConnection

from events import models, selectors, services
from events.selectors import ActivityWithEvent
from events.visibility import can_see
from schema.context import Info, require_user, viewer_id
from schema.enums import ActivityKind, EventKind, Verb, Visibility
from schema.errors import PulseError, bad_user_input, not_found
from schema.ids import decode_activity_cursor, decode_pk, encode_activity_cursor, encode_global_id
from schema.pagination import connection
from schema.permissions import IsSignedIn
from schema.users import UserType

T = TypeVar("T")

# Each concrete Event model's GraphQL type name, registered once by ``event_type``.
EVENT_TYPE_NAMES: dict[str, str] = {}  # activity kind -> type name
EVENT_TYPES: list[type] = []


def event_type(model: type[models.Event], name: str) -> Callable[[type[T]], type[T]]:
    """strawberry-django's ``type`` for an ``Event`` model, registered as a kind of event:
    its global ids, ``Activity.eventId`` and the schema's types follow from here."""

    def register(cls: type[T]) -> type[T]:
        wrapped = strawberry_django.type(model, name=name)(cls)
        EVENT_TYPE_NAMES[model.activity_kind] = name
        EVENT_TYPES.append(wrapped)
        return wrapped

    return register


@strawberry_django.interface(models.Event, name="Event")
class EventType(relay.Node):
    id: relay.NodeID[int]  # declared: strawberry then finds it once (tests/schema/test_node_ids.py)
    actor: UserType
    visibility: Visibility
    created_at: datetime
    updated_at: datetime


@event_type(models.StatusChange, name="StatusChange")
class StatusChangeType(EventType):
    status: str


@event_type(models.Comment, name="Comment")
class CommentType(EventType):
    body: str

    @strawberry_django.field(
        prefetch_related=[
            Prefetch(
                "target",
                queryset=models.Event.objects.select_subclasses().select_related("actor__profile"),
            )
        ]
    )
    def target(self, root: models.Comment, info: Info) -> EventType | None:
        """The commented event, or ``null`` when deleted or not visible."""
        target = root.target
        if target is None or not can_see(viewer_id(info), target):
            return None
        if type(target) is models.Event:  # not loaded through the prefetch above
            target = models.Event.objects.get_subclass(pk=target.pk)
        return cast(EventType, target)


@strawberry.type(name="Activity")
class ActivityType:
    """One entry of the activity log, as history, replay and live delivery show it."""

    activity: strawberry.Private[models.Activity]
    loaded_event: strawberry.Private[models.Event | None]

    @strawberry.field
    def cursor(self) -> str:
        return encode_activity_cursor(self.activity.pk)

    @strawberry.field
    def kind(self) -> ActivityKind:
        return ActivityKind(self.activity.kind)

    @strawberry.field
    def verb(self) -> Verb:
        return Verb(self.activity.verb)

    @strawberry.field
    def actor(self) -> UserType:
        return cast(UserType, self.activity.actor)

    @strawberry.field
    def message(self) -> str:
        return self.activity.message

    @strawberry.field
    def event_id(self) -> strawberry.ID | None:
        if self.activity.event_pk is None:
            return None
        type_name = EVENT_TYPE_NAMES[self.activity.kind]
        return strawberry.ID(encode_global_id(type_name, self.activity.event_pk))

    @strawberry.field
    def event(self) -> EventType | None:
        if self.activity.verb == models.Verb.DELETED:
            return None
        return cast(EventType | None, self.loaded_event)

    @strawberry.field
    def occurred_at(self) -> datetime:
        return self.activity.occurred_at


def activity_types(rows: list[ActivityWithEvent]) -> list[ActivityType]:
    """Wrap ``(activity, event)`` pairs for GraphQL."""
    return [ActivityType(activity=a, loaded_event=e) for a, e in rows]


def parse_activity_cursor(after: str | None) -> int:
    """The activity id a cursor points at (0 for none); ``BAD_USER_INPUT`` if malformed."""
    if after is None:
        return 0
    after_id = decode_activity_cursor(after)
    if after_id is None:
        raise PulseError("Invalid cursor.", "BAD_USER_INPUT", {"after": ["Invalid cursor."]})
    return after_id


def _visibility(value: Visibility | None) -> str:
    return (value or Visibility.PUBLIC).value


def _event_for_update(info: Info, id: str, model: type[models.Event]) -> models.Event:
    pk = decode_pk(id, EVENT_TYPE_NAMES.values())
    event = selectors.event_get_visible(viewer_id=viewer_id(info), event_id=pk) if pk else None
    if not isinstance(event, model):
        raise not_found("No such event.")
    return event


@strawberry.input
class CreateStatusChangeInput:
    status: str
    visibility: Visibility | None = Visibility.PUBLIC


@strawberry.input
class CreateCommentInput:
    body: str
    target_id: strawberry.ID | None = None
    visibility: Visibility | None = Visibility.PUBLIC


@strawberry.type
class Query:
    @strawberry_django.field
    def event(self, info: Info, id: strawberry.ID) -> EventType | None:
        pk = decode_pk(id, EVENT_TYPE_NAMES.values())
        if pk is None:
            return None
        found = selectors.event_get_visible(viewer_id=viewer_id(info), event_id=pk)
        return cast(EventType | None, found)

    @connection(DjangoListConnection[EventType], default_first=20)
    def events(
        self,
        info: Info,
        kind: EventKind | None = None,
        actor_id: strawberry.ID | None = None,
    ) -> Iterable[EventType]:
        queryset: QuerySet[models.Event] = selectors.events_visible(viewer_id=viewer_id(info))
        if kind is not None:
            queryset = selectors.events_of_kind(queryset, kind.value)
        if actor_id is not None:
            actor_pk = decode_pk(actor_id, ["User"])
            queryset = queryset.filter(actor_id=actor_pk) if actor_pk else queryset.none()
        return queryset  # type: ignore[return-value]

    @strawberry_django.field
    def activities(
        self, info: Info, after: str | None = None, first: int | None = 50
    ) -> list[ActivityType]:
        """History, oldest first."""
        if first is None:
            first = 50
        if not 0 <= first <= settings.PULSE_MAX_PAGE_SIZE:
            raise PulseError(
                f"first must be between 0 and {settings.PULSE_MAX_PAGE_SIZE}.",
                "BAD_USER_INPUT",
                {"first": ["Out of range."]},
            )
        activities = selectors.activities_after(
            viewer_id=viewer_id(info), after_id=parse_activity_cursor(after), limit=first
        )
        return activity_types(activities)


@strawberry.type
class Mutation:
    @strawberry_django.mutation(extensions=[IsSignedIn()])
    def create_status_change(self, info: Info, input: CreateStatusChangeInput) -> StatusChangeType:
        try:
            created = services.status_change_create(
                actor=require_user(info),
                status=input.status,
                visibility=_visibility(input.visibility),
            )
        except ValidationError as exc:
            raise bad_user_input(exc) from exc
        return cast(StatusChangeType, created)

    @strawberry_django.mutation(extensions=[IsSignedIn()])
    def update_status_change(self, info: Info, id: strawberry.ID, status: str) -> StatusChangeType:
        status_change = _event_for_update(info, id, models.StatusChange)
        try:
            updated = services.status_change_update(
                actor=require_user(info),
                status_change=cast(models.StatusChange, status_change),
                status=status,
            )
        except ValidationError as exc:
            raise bad_user_input(exc) from exc
        return cast(StatusChangeType, updated)

    @strawberry_django.mutation(extensions=[IsSignedIn()])
    def create_comment(self, info: Info, input: CreateCommentInput) -> CommentType:
        target = None
        if input.target_id is not None:
            target = _event_for_update(info, input.target_id, models.Event)
        try:
            created = services.comment_create(
                actor=require_user(info),
                body=input.body,
                target=target,
                visibility=_visibility(input.visibility),
            )
        except ValidationError as exc:
            raise bad_user_input(exc, {"target": "targetId"}) from exc
        return cast(CommentType, created)

    @strawberry_django.mutation(extensions=[IsSignedIn()])
    def update_comment(self, info: Info, id: strawberry.ID, body: str) -> CommentType:
        comment = _event_for_update(info, id, models.Comment)
        try:
            updated = services.comment_update(
                actor=require_user(info), comment=cast(models.Comment, comment), body=body
            )
        except ValidationError as exc:
            raise bad_user_input(exc) from exc
        return cast(CommentType, updated)

    @strawberry_django.mutation(extensions=[IsSignedIn()])
    def delete_event(self, info: Info, id: strawberry.ID) -> bool:
        event = _event_for_update(info, id, models.Event)
        services.event_delete(actor=require_user(info), event=event)
        return True
