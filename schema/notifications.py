"""GraphQL surface of notifications: the signed-in user's inbox, its count, live.

Every field here is the caller's own: the recipient is always the signed-in viewer,
never an argument, so nobody can name another user's inbox. The live
``notifications`` subscription streams from the notification log through the same
engine as ``activity`` (``NotificationStream``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, cast

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from django.conf import settings
from strawberry import relay
from strawberry_django.relay import DjangoListConnection

from events import models, notifications, selectors
from events.cursors import decode_notification_cursor, encode_notification_cursor
from events.notifications import NOTIFICATION_GROUP, NotificationEntry
from events.selectors import ActivityWithEvent
from events.visibility import Audience, can_see
from schema.context import AudienceContext, Info, require_user
from schema.errors import PulseError, not_found
from schema.events import ActivityType
from schema.ids import decode_pk
from schema.live.hub import STATE_POSITION, Log
from schema.live.streams import file_stream
from schema.loaders import PerLoopLoader
from schema.pagination import connection
from schema.permissions import IsSignedIn

NotificationKind = models.NotificationKind
strawberry.enum(NotificationKind, name="NotificationKind")


async def _load_activities(activity_ids: list[int]) -> list[ActivityWithEvent | None]:
    found = await sync_to_async(selectors.activities_by_pk)(activity_ids)
    return [found.get(pk) for pk in activity_ids]


# Batches the activities (and events) of a page of notifications into two queries.
activity_loader: PerLoopLoader[int, ActivityWithEvent | None] = PerLoopLoader(_load_activities)


@strawberry_django.type(models.Notification, name="Notification")
class NotificationType(relay.Node):
    id: relay.NodeID[int]  # declared: strawberry then finds it once (tests/schema/test_node_ids.py)
    kind: NotificationKind
    read: bool
    created_at: datetime

    @strawberry_django.field(only=["id"])
    async def cursor(self, root: models.Notification) -> str:
        """Opaque; pass it as ``after`` to the subscription or ``upTo`` to mark read."""
        # async: a sync resolver would cost a thread hop per live execution
        return encode_notification_cursor(root.pk)

    @strawberry_django.field(only=["activity_id", "recipient_id"])
    async def activity(self, root: models.Notification) -> ActivityType:
        """The activity that caused it (its event, while the recipient may see it)."""
        if hasattr(root, "loaded_event"):  # read with both (the live path)
            return ActivityType(activity=root.activity, loaded_event=root.loaded_event)
        found = await activity_loader().load(root.activity_id)
        if found is None:  # gone with its actor, between the page and this read
            raise not_found("The activity is gone.")
        activity, event = found
        visible = event if event is not None and can_see(root.recipient_id, event) else None
        return ActivityType(activity=activity, loaded_event=visible)


@strawberry.type(name="NotificationUpdate")
class NotificationUpdateType:
    notification: NotificationType | None = strawberry.field(
        description="Null when only the count changed (read elsewhere, or removed)."
    )
    unread_count: int


def _notification_log_read(
    *, after_id: int, limit: int, changed: set[int]
) -> list[NotificationEntry]:
    return notifications.notification_log_after(after_id=after_id, limit=limit, changed=changed)


NOTIFICATION_LOG = Log(
    name="notifications",
    group=NOTIFICATION_GROUP,
    position=lambda entry: entry.position,
    written_at=lambda entry: entry.written_at,
    read=_notification_log_read,
    latest_id=notifications.latest_notification_id,
    changed_keys=lambda message: [r for r in message.get("recipients") or () if isinstance(r, int)],
)


@dataclass(frozen=True)
class NotificationStream:
    """The ``notifications`` subscription: each subscriber's own inbox.

    It names no recipient: subscribers of one document share a shape whoever they are,
    and ``audience`` gives each entry to its recipient alone.
    """

    log: ClassVar[Log] = NOTIFICATION_LOG

    after_id: int | None

    @staticmethod
    def matches(entry: NotificationEntry) -> bool:
        return True

    @staticmethod
    def audience(viewer_id: int | None, entry: NotificationEntry) -> Audience | None:
        """The recipient alone."""
        return Audience.ACTOR if viewer_id == entry.recipient_id else None

    @staticmethod
    def position(entry: NotificationEntry) -> int:
        return entry.position

    @staticmethod
    def cursor(position: int) -> str:
        return encode_notification_cursor(position) if position != STATE_POSITION else ""

    @staticmethod
    def resume_after(cursor: str) -> int | None:
        return decode_notification_cursor(cursor)

    @staticmethod
    def replay_page(*, viewer_id: int | None, after_id: int, limit: int) -> list[NotificationEntry]:
        if viewer_id is None:
            return []
        return notifications.notifications_after_for(
            recipient_id=viewer_id, after_id=after_id, limit=limit
        )

    @staticmethod
    def root(entry: NotificationEntry) -> NotificationUpdateType:
        return NotificationUpdateType(
            notification=cast(NotificationType | None, entry.notification),
            unread_count=entry.unread_count,
        )

    @staticmethod
    def context(entry: NotificationEntry, seen_as: Audience) -> AudienceContext:
        return AudienceContext(viewer_id=entry.recipient_id, signed_in=True)


def parse_notification_cursor(cursor: str, argument: str) -> int:
    """The notification id in a cursor; ``BAD_USER_INPUT`` naming ``argument`` if not."""
    notification_id = decode_notification_cursor(cursor)
    if notification_id is None:
        raise PulseError("Invalid cursor.", "BAD_USER_INPUT", {argument: ["Invalid cursor."]})
    return notification_id


def _recipient_id(info: Info) -> int:
    """The signed-in viewer (``UNAUTHENTICATED`` otherwise), also for a live shape."""
    if isinstance(info.context, AudienceContext) and info.context.viewer_id is not None:
        return info.context.viewer_id
    return cast(int, require_user(info).pk)


@strawberry.type
class Query:
    @connection(DjangoListConnection[NotificationType], default_first=20, extensions=[IsSignedIn()])
    def notifications(
        self, info: Info, unread_only: bool | None = False
    ) -> Iterable[NotificationType]:
        """The signed-in user's notifications, newest first."""
        return notifications.notifications_of(  # type: ignore[return-value]
            recipient_id=_recipient_id(info), unread_only=bool(unread_only)
        )

    @strawberry_django.field(extensions=[IsSignedIn()])
    def unread_notification_count(self, info: Info) -> int:
        """How many of the signed-in user's notifications are unread."""
        return notifications.unread_count(recipient_id=_recipient_id(info))


@strawberry.type
class Mutation:
    @strawberry_django.mutation(extensions=[IsSignedIn()])
    def mark_notifications_read(
        self,
        info: Info,
        ids: list[strawberry.ID] | None = None,
        up_to: str | None = None,
    ) -> int:
        """Marks the caller's own notifications read: the given ids, or all up to and
        including the cursor ``upTo``, or all when neither is given; the new unread count.
        Ids of notifications that are not the caller's change nothing."""
        if ids is not None and up_to is not None:
            message = "Give ids or upTo, not both."
            raise PulseError(message, "BAD_USER_INPUT", {"ids": [message]})
        pks: list[int] | None = None
        if ids is not None:
            if len(ids) > settings.PULSE_MAX_PAGE_SIZE:
                message = f"At most {settings.PULSE_MAX_PAGE_SIZE} ids at once."
                raise PulseError(message, "BAD_USER_INPUT", {"ids": [message]})
            decoded = [decode_pk(value, ["Notification"]) for value in ids]
            if None in decoded:
                message = "Not a notification id."
                raise PulseError(message, "BAD_USER_INPUT", {"ids": [message]})
            pks = [pk for pk in decoded if pk is not None]
        up_to_id = parse_notification_cursor(up_to, "upTo") if up_to is not None else None
        return notifications.notifications_mark_read(
            recipient_id=_recipient_id(info), ids=pks, up_to_id=up_to_id
        )


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def notifications(
        self, info: Info, after: str | None = None
    ) -> AsyncGenerator[NotificationUpdateType, None]:
        """Signed-in only. Replays the caller's notifications after ``after``, oldest
        first, then streams new ones and every change of their unread count."""
        require_user(info)  # else UNAUTHENTICATED
        after_id = parse_notification_cursor(after, "after") if after is not None else None
        file_stream(info, NotificationStream(after_id=after_id))
        return
        yield  # the engine streams
