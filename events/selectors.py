"""Read paths for events and the activity log, always filtered by visibility."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TypeAlias

from django.db.models import Max, QuerySet

from events.models import Activity, Event
from events.visibility import visible_q

ActivityWithEvent: TypeAlias = tuple[Activity, Event | None]


def events_visible(*, viewer_id: int | None) -> QuerySet[Event]:
    """Events ``viewer_id`` may see, newest first, as their concrete subclasses."""
    return Event.objects.select_subclasses().filter(visible_q(viewer_id)).order_by("-id")


def event_get_visible(*, viewer_id: int | None, event_id: int) -> Event | None:
    """One visible event as its concrete subclass, or ``None``."""
    return events_visible(viewer_id=viewer_id).filter(pk=event_id).first()


def activities_after(
    *,
    viewer_id: int | None,
    after_id: int,
    limit: int,
    kinds: Collection[str] | None = None,
    actor_id: int | None = None,
) -> list[ActivityWithEvent]:
    """The next ``limit`` visible activities after ``after_id``, oldest first."""
    queryset = Activity.objects.filter(visible_q(viewer_id))
    return _log_page(queryset, after_id, limit, kinds, actor_id)


def log_after(
    *,
    after_id: int,
    limit: int,
    kinds: Collection[str] | None = None,
    actor_id: int | None = None,
) -> list[ActivityWithEvent]:
    """The next ``limit`` activities of the whole log after ``after_id``, private ones too."""
    return _log_page(Activity.objects.all(), after_id, limit, kinds, actor_id)


def _log_page(
    queryset: QuerySet[Activity],
    after_id: int,
    limit: int,
    kinds: Collection[str] | None,
    actor_id: int | None,
) -> list[ActivityWithEvent]:
    queryset = queryset.filter(id__gt=after_id)
    if kinds is not None:
        queryset = queryset.filter(kind__in=kinds)
    if actor_id is not None:
        queryset = queryset.filter(actor_id=actor_id)
    return with_events(queryset.select_related("actor__profile").order_by("id")[:limit])


def latest_activity_id() -> int:
    """The id of the newest activity, or 0."""
    return Activity.objects.aggregate(latest=Max("id"))["latest"] or 0


def activity_count_after(*, after_id: int) -> int:
    """How many activities were logged after ``after_id`` (ids may have gaps)."""
    return Activity.objects.filter(id__gt=after_id).count()


def recent_activities_start(*, viewer_id: int | None, count: int) -> int:
    """The id after which the ``count`` newest activities ``viewer_id`` may see come (or 0)."""
    ids = (
        Activity.objects.filter(visible_q(viewer_id))
        .order_by("-id")
        .values_list("id", flat=True)[count : count + 1]
    )
    return next(iter(ids), 0)


def with_events(activities: Iterable[Activity]) -> list[ActivityWithEvent]:
    """Pair activities with their still-existing events, read in one query."""
    rows = list(activities)
    events = events_by_pk({a.event_pk for a in rows if a.event_pk is not None})
    return [(a, events.get(a.event_pk) if a.event_pk is not None else None) for a in rows]


def activities_by_pk(pks: Collection[int]) -> dict[int, ActivityWithEvent]:
    """Activities (with actor and profile) and their events, in two queries."""
    activities = Activity.objects.select_related("actor__profile").filter(pk__in=pks)
    return {row[0].pk: row for row in with_events(activities)}


def events_by_pk(pks: Collection[int]) -> dict[int, Event]:
    """The still-existing events of ``pks`` as their subclasses, in one query (none if
    ``pks`` is empty)."""
    if not pks:
        return {}
    found = Event.objects.select_subclasses().select_related("actor__profile").filter(pk__in=pks)
    return {event.pk: event for event in found}


def concrete_event_models() -> list[type[Event]]:
    """Every concrete ``Event`` subclass, in the order they were defined."""
    found: list[type[Event]] = []
    pending = list(Event.__subclasses__())
    while pending:
        model = pending.pop(0)
        if not model._meta.abstract and not model._meta.proxy:
            found.append(model)
        pending.extend(model.__subclasses__())
    return found


def event_model_for_kind(kind: str) -> type[Event] | None:
    """The concrete ``Event`` subclass publishing activities of ``kind``."""
    return next((m for m in concrete_event_models() if m.activity_kind == kind), None)


def events_of_kind(queryset: QuerySet[Event], kind: str) -> QuerySet[Event]:
    """Narrow ``queryset`` to events of one kind."""
    model = event_model_for_kind(kind)
    if model is None:
        return queryset.none()
    return queryset.filter(**{f"{model._meta.model_name}__isnull": False})
