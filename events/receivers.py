"""Receivers that turn saved and deleted events into activities.

``Event.__init_subclass__`` calls :func:`connect_event_model` for every subclass, so a
new kind of event publishes with no extra wiring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models.signals import post_delete, post_save

if TYPE_CHECKING:
    from events.models import Event


def event_saved(sender: type[Event], instance: Event, created: bool, raw: bool, **_: Any) -> None:
    """Record ``CREATED`` or ``UPDATED``; Django's ``created`` tells them apart, no query."""
    if raw:
        return
    from events.models import Verb
    from events.services import activity_record_event

    activity_record_event(event=instance, verb=Verb.CREATED if created else Verb.UPDATED)


def event_deleted(sender: type[Event], instance: Event, origin: Any = None, **_: Any) -> None:
    """Record ``DELETED``, unless the event goes because its author is being deleted."""
    from django.contrib.auth import get_user_model

    if isinstance(origin, get_user_model()):
        return
    from events.models import Verb
    from events.services import activity_record_event

    activity_record_event(event=instance, verb=Verb.DELETED)


def connect_event_model(model: type[Event]) -> None:
    """Connect the receivers to one ``Event`` subclass (abstract ones are never saved)."""
    uid = f"{model.__module__}.{model.__qualname__}"
    post_save.connect(event_saved, sender=model, dispatch_uid=f"events.saved.{uid}")
    post_delete.connect(event_deleted, sender=model, dispatch_uid=f"events.deleted.{uid}")
