"""Events (status changes, comments) and the activity log they publish into."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.core.validators import MaxLengthValidator
from django.db import models
from model_utils.managers import InheritanceManager


class Visibility(models.TextChoices):
    PUBLIC = "PUBLIC", "Public"
    PRIVATE = "PRIVATE", "Private"


class ActivityKind(models.TextChoices):
    USER_JOINED = "USER_JOINED", "User joined"
    STATUS_CHANGE = "STATUS_CHANGE", "Status change"
    COMMENT = "COMMENT", "Comment"


class NotificationKind(models.TextChoices):
    COMMENT = "COMMENT", "Comment on your event"
    MENTION = "MENTION", "Mention"


class Verb(models.TextChoices):
    CREATED = "CREATED", "Created"
    UPDATED = "UPDATED", "Updated"
    DELETED = "DELETED", "Deleted"


def quoted(text: str) -> str:
    """A user's text as activity messages quote it: always in single quotes, as written
    (Python's ``repr`` switched to double quotes for a text holding an apostrophe)."""
    return f"'{text}'"


class Activity(models.Model):
    """One row per published activity: the log that replay reads and the outbox.

    ``event_pk`` is a plain integer, not a foreign key, so the activity keeps its
    event's id after the event is deleted; ``visibility`` is copied for the same reason.
    """

    kind = models.CharField(max_length=20, choices=ActivityKind.choices)
    verb = models.CharField(max_length=10, choices=Verb.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="activities"
    )
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    message = models.TextField()
    event_pk = models.BigIntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "activities"

    def __str__(self) -> str:
        return f"#{self.pk} {self.message}"


class Event(models.Model):
    """Base of everything a user does that the stream shows (multi-table inheritance).

    Every concrete subclass publishes an activity when saved or deleted, with no extra
    wiring: ``__init_subclass__`` connects it, because Django's dispatcher matches the
    exact sender class and never its subclasses. Write events with ``.save()``/
    ``.delete()`` or the services only: ``QuerySet.update``/``bulk_create`` skip signals
    and so the activity log.
    """

    activity_kind: ClassVar[str] = ""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="events"
    )
    visibility = models.CharField(
        max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InheritanceManager()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        from events.receivers import connect_event_model

        connect_event_model(cls)

    def __str__(self) -> str:
        return f"{type(self).__name__} #{self.pk}"

    def activity_message(self, verb: str) -> str:
        """Human-readable line for the activity this event publishes."""
        raise NotImplementedError

    def mention_text(self) -> str:
        """The text whose ``@username`` mentions notify (``events.mentions``)."""
        return ""


class StatusChange(Event):
    activity_kind = ActivityKind.STATUS_CHANGE

    status = models.CharField(max_length=280)

    def activity_message(self, verb: str) -> str:
        name = self.actor.username
        if verb == Verb.CREATED:
            return f"{name} changed status to {quoted(self.status)}"
        if verb == Verb.UPDATED:
            return f"{name} edited status to {quoted(self.status)}"
        return f"{name} deleted a status"

    def mention_text(self) -> str:
        return self.status


class Comment(Event):
    activity_kind = ActivityKind.COMMENT

    body = models.TextField(max_length=5000, validators=[MaxLengthValidator(5000)])
    target = models.ForeignKey(
        Event,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="comments",
    )

    def activity_message(self, verb: str) -> str:
        name = self.actor.username
        excerpt = self.body if len(self.body) <= 80 else self.body[:79] + "…"
        if verb == Verb.CREATED:
            return f"{name} commented {quoted(excerpt)}"
        if verb == Verb.UPDATED:
            return f"{name} edited a comment to {quoted(excerpt)}"
        return f"{name} deleted a comment"

    def mention_text(self) -> str:
        return self.body


class Notification(models.Model):
    """What concerns one user: written by the events' receivers in the event's own
    transaction, so a rolled-back write notifies no one.

    Ids commit in id order (they are written under the activity log's append lock), so
    the notifications are a log the live engine tails like the activities. ``event_pk``
    is the event that caused it: deleting the event deletes its notifications.
    """

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=10, choices=NotificationKind.choices)
    activity = models.ForeignKey(Activity, on_delete=models.CASCADE, related_name="+")
    event_pk = models.BigIntegerField(db_index=True)
    read = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["recipient", "-id"], name="notification_inbox"),
            models.Index(
                fields=["recipient"],
                condition=models.Q(read=False),
                name="notification_unread",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.recipient_id}: #{self.activity_id}"
