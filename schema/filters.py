"""What one subscription asked for: kinds, actor, and who is looking."""

from __future__ import annotations

from dataclasses import dataclass

from events.models import Activity
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
