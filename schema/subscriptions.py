"""The ``activity`` subscription: its arguments, decoded once for the live engine.

The resolver yields nothing itself: it files an ``ActivityStream`` and the live engine
(``schema.live``) replays the log after ``after``, then streams live activities, for
every transport alike.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from schema.context import Info
from schema.enums import ActivityKind
from schema.events import ActivityType, parse_activity_cursor
from schema.ids import decode_pk
from schema.live.streams import ActivityStream, decoded_ids, file_stream


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def activity(
        self,
        info: Info,
        after: str | None = None,
        kinds: list[ActivityKind] | None = None,
        actor_id: strawberry.ID | None = None,
    ) -> AsyncGenerator[ActivityType, None]:
        """Replays every visible activity after ``after``, then streams live ones,
        with no gap and no duplicate across the seam. Without ``after``, live only."""
        file_stream(
            info,
            ActivityStream(
                after_id=parse_activity_cursor(after) if after is not None else None,
                kinds=frozenset(kind.value for kind in kinds) if kinds is not None else None,
                actor_ids=(
                    decoded_ids([actor_id], lambda value: decode_pk(value, ["User"]))
                    if actor_id is not None
                    else None
                ),
            ),
        )
        return
        yield  # an async generator that the engine, not graphql-core, streams from
