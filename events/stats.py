"""Each user's public posting stats, from Django's cache, invalidated once a write commits.

A read takes every wanted user's entry in one cache round trip (``get_many``) and
computes the misses in one query. The events' save and delete receivers invalidate the
actor's entry once the write commits (``activity_record_event``). Invalidation writes a
short-lived marker rather than deleting, and a read only ``add``s what it computed: a
read whose query ran before the commit can then never store its stale result after the
invalidation (the marker is in the way). While the marker lasts, reads compute from the
database. With Redis, every process shares the cache; without, each has its own, which
is right for the one process the in-process layer serves.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime

from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max, Q

from events.models import Event, Visibility

logger = logging.getLogger(__name__)

INVALIDATED = "invalidated"
INVALIDATION_SECONDS = 30  # longer than any read's query takes
STATS_SECONDS = 300  # bounds staleness if an invalidation was lost (cache unreachable)


@dataclass(frozen=True)
class UserStats:
    status_count: int = 0  # the user's PUBLIC status changes
    comment_count: int = 0  # the user's PUBLIC comments
    last_posted_at: datetime | None = None  # their latest PUBLIC event


def stats_key(user_id: int) -> str:
    return f"stats:{user_id}"


def stats_for(user_ids: Collection[int]) -> dict[int, UserStats]:
    """The stats of each user: one cache round trip, one query for the misses."""
    keys = {user_id: stats_key(user_id) for user_id in set(user_ids)}
    try:
        cached = cache.get_many(keys.values())
    except Exception:  # the cache is away: the database still answers
        logger.warning("Stats cache unavailable; reading from the database", exc_info=True)
        return stats_compute(keys)
    found: dict[int, UserStats] = {}
    missing = []
    for user_id, key in keys.items():
        value = cached.get(key)
        if isinstance(value, dict):
            found[user_id] = UserStats(**value)
        else:
            missing.append(user_id)
    if missing:
        computed = stats_compute(missing)
        found.update(computed)
        for user_id in missing:
            if cached.get(keys[user_id]) != INVALIDATED:  # none while just invalidated
                _fill(keys[user_id], computed[user_id])
    return found


def _fill(key: str, stats: UserStats) -> None:
    try:
        cache.add(key, asdict(stats), STATS_SECONDS)
    except Exception:
        logger.warning("Could not cache stats", exc_info=True)


def stats_compute(user_ids: Collection[int]) -> dict[int, UserStats]:
    """The stats of each user, from the database, in one query."""
    rows = (
        Event.objects.filter(actor_id__in=list(user_ids), visibility=Visibility.PUBLIC)
        .values("actor_id")
        .annotate(
            status_count=Count("pk", filter=Q(statuschange__isnull=False)),
            comment_count=Count("pk", filter=Q(comment__isnull=False)),
            last_posted_at=Max("created_at"),
        )
        .order_by()
    )
    computed = {user_id: UserStats() for user_id in user_ids}
    for row in rows:
        computed[row["actor_id"]] = UserStats(
            status_count=row["status_count"],
            comment_count=row["comment_count"],
            last_posted_at=row["last_posted_at"],
        )
    return computed


def stats_invalidate_on_commit(*, user_id: int) -> None:
    """Invalidate a user's stats once the current transaction commits (never before:
    a rolled-back write invalidates nothing)."""

    def invalidate_committed_stats() -> None:
        # A named function: Django's robust on_commit logs failures by __qualname__.
        cache.set(stats_key(user_id), INVALIDATED, INVALIDATION_SECONDS)

    transaction.on_commit(invalidate_committed_stats, robust=True)
