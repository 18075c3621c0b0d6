"""Notifications: written by the events' receivers, read by their recipient only.

``notify_for_event`` runs inside the event's transaction, after its activity was
appended (so under the log's append lock: notification ids commit in id order and the
live engine tails them as a log). It writes every notification of one write in one
``INSERT``. Counts are never stored: the unread count is read when it is delivered.

Doorbells, on commit, to ``NOTIFICATION_GROUP``: ``{"id": ...}`` when notifications
were written, ``{"recipients": [...]}`` when someone's unread count changed otherwise
(read, or removed with their event).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, QuerySet

from events.mentions import mentioned_user_ids
from events.models import Activity, Comment, Event, Notification, NotificationKind, Verb
from events.publisher import group_publish
from events.selectors import activities_by_pk
from events.visibility import can_see

NOTIFICATION_GROUP = f"{settings.PULSE_REDIS_NAMESPACE}.notifications"
NOTIFICATION_MESSAGE_TYPE = "notification.changed"


@dataclass(frozen=True)
class NotificationEntry:
    """One delivery to a recipient: a new notification, or only their new count."""

    position: int  # the notification's id; ``-1`` (state) for a count only
    recipient_id: int
    notification: Notification | None
    unread_count: int
    written_at: float


# Writes -------------------------------------------------------------------------------


def notify_for_event(*, event: Event, activity: Activity, verb: str) -> None:
    """Write what one saved or deleted event notifies (the contract's rules)."""
    if verb == Verb.DELETED:
        _remove_for_event(event.pk)
        return
    recipients: dict[int, str] = {}
    if verb == Verb.CREATED and isinstance(event, Comment) and event.target_id is not None:
        target = Event.objects.filter(pk=event.target_id).values_list("actor_id", flat=True)
        for author_id in target:
            recipients[author_id] = NotificationKind.COMMENT
    mentioned = mentioned_user_ids(event.mention_text())
    if mentioned and verb == Verb.UPDATED:  # only users newly mentioned
        mentioned -= set(
            Notification.objects.filter(
                event_pk=event.pk, kind=NotificationKind.MENTION, recipient_id__in=mentioned
            ).values_list("recipient_id", flat=True)
        )
    for user_id in mentioned:
        recipients.setdefault(user_id, NotificationKind.MENTION)
    recipients.pop(event.actor_id, None)  # never of one's own write
    # Who may see the event (a PRIVATE one: its author alone, so nobody else).
    notified = [
        Notification(recipient_id=user_id, kind=kind, activity=activity, event_pk=event.pk)
        for user_id, kind in sorted(recipients.items())
        if can_see(user_id, event)
    ]
    if not notified:
        return
    created = Notification.objects.bulk_create(notified)  # one statement
    latest = max((n.pk for n in created if n.pk is not None), default=None)

    def publish_notifications() -> None:
        group_publish(
            NOTIFICATION_GROUP,
            {"type": NOTIFICATION_MESSAGE_TYPE, "id": latest, "published_at": time.time()},
        )

    transaction.on_commit(publish_notifications, robust=True)


def _remove_for_event(event_pk: int) -> None:
    caused = Notification.objects.filter(event_pk=event_pk)
    unread_of = set(caused.filter(read=False).values_list("recipient_id", flat=True))
    caused.delete()
    _publish_counts_on_commit(unread_of)


def notifications_mark_read(
    *, recipient_id: int, ids: Collection[int] | None = None, up_to_id: int | None = None
) -> int:
    """Mark the recipient's own notifications read (the given ids, or all up to and
    including ``up_to_id``, or all); their new unread count. Others' ids are ignored."""
    with transaction.atomic():
        unread = Notification.objects.filter(recipient_id=recipient_id, read=False)
        if ids is not None:
            unread = unread.filter(pk__in=ids)
        elif up_to_id is not None:
            unread = unread.filter(pk__lte=up_to_id)
        if unread.update(read=True):
            _publish_counts_on_commit({recipient_id})
        return unread_count(recipient_id=recipient_id)


def _publish_counts_on_commit(recipient_ids: Iterable[int]) -> None:
    recipients = sorted(recipient_ids)
    if not recipients:
        return

    def publish_counts() -> None:
        group_publish(
            NOTIFICATION_GROUP, {"type": NOTIFICATION_MESSAGE_TYPE, "recipients": recipients}
        )

    transaction.on_commit(publish_counts, robust=True)


# Reads --------------------------------------------------------------------------------


def notifications_of(*, recipient_id: int, unread_only: bool = False) -> Iterable[Notification]:
    """The recipient's notifications, newest first (a queryset, for connections)."""
    queryset = Notification.objects.filter(recipient_id=recipient_id)
    if unread_only:
        queryset = queryset.filter(read=False)
    return queryset.select_related("activity__actor__profile").order_by("-id")


def unread_count(*, recipient_id: int) -> int:
    """How many of the recipient's notifications are unread."""
    return Notification.objects.filter(recipient_id=recipient_id, read=False).count()


def unread_counts(recipient_ids: Collection[int]) -> dict[int, int]:
    """Unread counts of several recipients, in one query."""
    counts = dict.fromkeys(recipient_ids, 0)
    if recipient_ids:
        rows = (
            Notification.objects.filter(recipient_id__in=recipient_ids, read=False)
            .values("recipient_id")
            .annotate(unread=Count("id"))
            .values_list("recipient_id", "unread")
        )
        counts.update(rows)
    return counts


def latest_notification_id() -> int:
    """The id of the newest notification, or 0."""
    return Notification.objects.aggregate(latest=Max("id"))["latest"] or 0


def notification_log_after(
    *, after_id: int, limit: int, changed: Collection[int] = ()
) -> list[NotificationEntry]:
    """Every recipient's notifications after ``after_id`` (oldest first, at most
    ``limit``), then a count-only entry for each recipient in ``changed`` that got none."""
    rows = _with_activities(Notification.objects.filter(id__gt=after_id), limit)
    recipients = {n.recipient_id for n in rows}
    count_only = set(changed) - recipients
    counts = unread_counts(recipients | count_only)
    entries = [_entry(n, counts[n.recipient_id]) for n in rows]
    now = time.time()
    entries += [NotificationEntry(-1, r, None, counts[r], now) for r in sorted(count_only)]
    return entries


def notifications_after_for(
    *, recipient_id: int, after_id: int, limit: int
) -> list[NotificationEntry]:
    """One recipient's notifications after ``after_id``, oldest first (replay)."""
    rows = _with_activities(
        Notification.objects.filter(recipient_id=recipient_id, id__gt=after_id), limit
    )
    count = unread_count(recipient_id=recipient_id) if rows else 0
    return [_entry(n, count) for n in rows]


def _entry(notification: Notification, count: int) -> NotificationEntry:
    return NotificationEntry(
        notification.pk,
        notification.recipient_id,
        notification,
        count,
        notification.created_at.timestamp(),
    )


def _with_activities(notifications: QuerySet[Notification], limit: int) -> list[Notification]:
    """The first ``limit`` notifications by id, with their activity, its actor and its
    event loaded (three queries whatever their number; one write's notifications share
    one activity, read once); the event only where the recipient may see it
    (``loaded_event``)."""
    rows = list(notifications.order_by("id")[:limit])
    activities = activities_by_pk({n.activity_id for n in rows})
    for notification in rows:
        activity, event = activities[notification.activity_id]
        notification.activity = activity  # the shared instance, cached on the relation
        visible = event is not None and can_see(notification.recipient_id, event)
        notification.loaded_event = event if visible else None  # type: ignore[attr-defined]
    return rows
