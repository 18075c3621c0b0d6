"""The one publishing path: append an activity to the log, publish it on commit."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction

from backend.metrics import ACTIVITIES_PUBLISHED
from events.models import (
    Activity,
    ActivityKind,
    Comment,
    Event,
    StatusChange,
    Verb,
    Visibility,
)
from events.notifications import notify_for_event
from events.publisher import activity_publish
from events.stats import stats_invalidate_on_commit

# Held from the append to the commit on PostgreSQL, so activity ids become visible in
# id order: a client resuming after id N can never miss a smaller id committed later.
ACTIVITY_APPEND_LOCK = 0x50756C7365  # "Pulse"


def _activity_append(**fields: object) -> Activity:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ACTIVITY_APPEND_LOCK])
    activity = Activity.objects.create(**fields)

    def publish_committed_activity() -> None:
        # A named function: Django's robust on_commit logs failures by __qualname__.
        ACTIVITIES_PUBLISHED.labels(activity.kind).inc()
        activity_publish(activity.pk)

    transaction.on_commit(publish_committed_activity, robust=True)
    return activity


def activity_record_user_joined(*, user: User) -> Activity:
    """Log that ``user`` joined (public: everyone sees who joined)."""
    return _activity_append(
        kind=ActivityKind.USER_JOINED,
        verb=Verb.CREATED,
        actor=user,
        visibility=Visibility.PUBLIC,
        message=f"{user.username} joined",
    )


@transaction.atomic(savepoint=False)  # the activity and its notifications, or neither
def activity_record_event(*, event: Event, verb: str) -> Activity:
    """Log that ``event`` was created, updated or deleted, with its visibility, and
    write (or remove) what it notifies; its actor's cached stats are invalidated once
    that commits."""
    stats_invalidate_on_commit(user_id=event.actor_id)
    activity = _activity_append(
        kind=event.activity_kind,
        verb=verb,
        actor_id=event.actor_id,
        visibility=event.visibility,
        message=event.activity_message(verb),
        event_pk=event.pk,
    )
    notify_for_event(event=event, activity=activity, verb=verb)
    return activity


def _validate(event: Event) -> None:
    """Validate what the client sent. The actor and a comment's target are rows this
    request has just loaded, so their foreign keys are not looked up again (a query
    each; the database's constraints still hold)."""
    event.full_clean(exclude=["actor", "target"])


@transaction.atomic
def status_change_create(*, actor: User, status: str, visibility: str) -> StatusChange:
    """Validate and save a new status change (publishes ``CREATED``)."""
    status_change = StatusChange(actor=actor, status=status, visibility=visibility)
    _validate(status_change)
    status_change.save()
    return status_change


@transaction.atomic
def status_change_update(*, actor: User, status_change: StatusChange, status: str) -> StatusChange:
    """Change the text of ``actor``'s own status change (publishes ``UPDATED``)."""
    _ensure_author(actor, status_change)
    status_change.status = status
    _validate(status_change)
    status_change.save()
    return status_change


@transaction.atomic
def comment_create(*, actor: User, body: str, target: Event | None, visibility: str) -> Comment:
    """Validate and save a new comment, optionally on a visible event."""
    comment = Comment(actor=actor, body=body, target=target, visibility=visibility)
    _validate(comment)
    comment.save()
    return comment


@transaction.atomic
def comment_update(*, actor: User, comment: Comment, body: str) -> Comment:
    """Change the body of ``actor``'s own comment (publishes ``UPDATED``)."""
    _ensure_author(actor, comment)
    comment.body = body
    _validate(comment)
    comment.save()
    return comment


@transaction.atomic
def event_delete(*, actor: User, event: Event) -> None:
    """Delete ``actor``'s own event (publishes ``DELETED``); comments on it stay."""
    _ensure_author(actor, event)
    event.delete()


def _ensure_author(actor: User, event: Event) -> None:
    if event.actor_id != actor.pk:
        raise PermissionDenied("Only the author can change this event.")
