"""The ``activity`` subscription: replay from the log, then live from the hub."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from asgiref.sync import sync_to_async

from backend.metrics import DELIVERIES_LIVE, DELIVERIES_REPLAY, DROPPED_QUEUE_FULL
from schema.context import Info, viewer_id
from schema.enums import ActivityKind
from schema.errors import slow_consumer
from schema.events import ActivityType, parse_activity_cursor
from schema.filters import ActivityFilter, replay_log
from schema.hub import SlowConsumerError, Subscriber, get_hub
from schema.ids import decode_pk, encode_activity_cursor

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
                async for activity, event in replay_log(wanted, last_id):
                    last_id = activity.pk
                    DELIVERIES_REPLAY.inc()
                    yield ActivityType(activity=activity, loaded_event=event)
            while True:
                try:
                    activity, event = await subscriber.next()
                except SlowConsumerError:
                    DROPPED_QUEUE_FULL.inc()
                    raise slow_consumer(encode_activity_cursor(last_id)) from None
                if activity.pk <= last_id:
                    continue
                last_id = activity.pk
                DELIVERIES_LIVE.inc()  # executed and sent per subscriber on this path
                yield ActivityType(activity=activity, loaded_event=event)
        finally:
            hub.unsubscribe(subscriber)
