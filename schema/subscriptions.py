"""The ``activity`` subscription: replay from the log, then live from the hub."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from asgiref.sync import sync_to_async
from django.conf import settings

from events import selectors
from schema.context import Info, viewer_id
from schema.enums import ActivityKind
from schema.errors import PulseError
from schema.events import ActivityType, parse_activity_cursor
from schema.filters import ActivityFilter
from schema.hub import SlowConsumerError, Subscriber, get_hub
from schema.ids import decode_pk, encode_activity_cursor

SLOW_CONSUMER = "SLOW_CONSUMER"
NO_SUCH_ACTOR = -1  # an actorId that decodes to nothing matches no activity


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
        """Replays every visible activity after ``after``, then streams live ones.

        The subscriber joins the hub before the log is read, so an activity committed
        during the replay is either in the replay or in the live queue (or both; ids
        already sent are skipped): no gap and no duplicate across the seam.
        """
        last_id = parse_activity_cursor(after)
        wanted = ActivityFilter(
            viewer_id=await sync_to_async(viewer_id)(info),
            kinds=frozenset(k.value for k in kinds) if kinds is not None else None,
            actor_id=(decode_pk(actor_id, ["User"]) or NO_SUCH_ACTOR) if actor_id else None,
        )
        subscriber = Subscriber(filter=wanted)
        hub = get_hub()
        await hub.subscribe(subscriber)
        try:
            if after is not None:
                batch_size = settings.PULSE_REPLAY_BATCH_SIZE
                while True:
                    rows = await sync_to_async(selectors.activities_after)(
                        viewer_id=wanted.viewer_id,
                        after_id=last_id,
                        limit=batch_size,
                        kinds=wanted.kinds,
                        actor_id=wanted.actor_id,
                    )
                    for activity, event in rows:
                        last_id = activity.pk
                        yield ActivityType(activity=activity, loaded_event=event)
                    if len(rows) < batch_size:
                        break
            while True:
                try:
                    activity, event = await subscriber.next()
                except SlowConsumerError:
                    raise PulseError(
                        "Too slow to keep up; resubscribe with `after` set to the last cursor "
                        f"received ({encode_activity_cursor(last_id)}).",
                        SLOW_CONSUMER,
                    ) from None
                if activity.pk <= last_id:
                    continue
                last_id = activity.pk
                yield ActivityType(activity=activity, loaded_event=event)
        finally:
            hub.unsubscribe(subscriber)
