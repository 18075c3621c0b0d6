"""What one subscription asked for: kinds, actor, and who is looking."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings

from events import selectors
from events.models import Activity
from events.selectors import ActivityWithEvent
from events.visibility import can_see


@dataclass(frozen=True)
class ActivityFilter:
    """Which activities one subscription asked for (beyond what it may see)."""

    viewer_id: int | None
    kinds: frozenset[str] | None = None
    actor_id: int | None = None

    def accepts(self, activity: Activity) -> bool:
        if self.kinds is not None and activity.kind not in self.kinds:
            return False
        if self.actor_id is not None and activity.actor_id != self.actor_id:
            return False
        return can_see(self.viewer_id, activity)


async def replay_log(wanted: ActivityFilter, after_id: int) -> AsyncIterator[ActivityWithEvent]:
    """Every activity after ``after_id`` that ``wanted`` accepts, oldest first, in batches."""
    batch_size = settings.PULSE_REPLAY_BATCH_SIZE
    while True:
        rows = await database_sync_to_async(selectors.activities_after)(
            viewer_id=wanted.viewer_id,
            after_id=after_id,
            limit=batch_size,
            kinds=wanted.kinds,
            actor_id=wanted.actor_id,
        )
        for row in rows:
            after_id = row[0].pk
            yield row
        if len(rows) < batch_size:
            return
