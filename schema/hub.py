"""One listener per server process, fanning each activity out to its subscriptions.

The publisher sends each committed activity's id once to the channel-layer group.
Here, each process's single listener receives it once, reads the row and its event
once, and hands the result to every local subscription allowed to see it. The
per-subscriber cost is a visibility check and a bounded queue append.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from events import selectors
from events.models import Activity
from events.publisher import ACTIVITY_GROUP
from events.selectors import ActivityWithEvent
from events.visibility import can_see

logger = logging.getLogger(__name__)

RETRY_SECONDS = (0.5, 1, 2, 5)


class SlowConsumerError(Exception):
    """The subscriber's queue overflowed; it must resume from its last cursor."""


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


@dataclass(eq=False)
class Subscriber:
    """A bounded queue of delivered activities for one GraphQL subscription."""

    filter: ActivityFilter
    max_items: int = field(default_factory=lambda: settings.PULSE_SUBSCRIBER_QUEUE_SIZE)
    overflowed: bool = False
    _items: collections.deque[ActivityWithEvent] = field(default_factory=collections.deque)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, item: ActivityWithEvent) -> None:
        if len(self._items) >= self.max_items:
            self.overflowed = True
        else:
            self._items.append(item)
        self._wakeup.set()

    async def next(self) -> ActivityWithEvent:
        """The next activity; raises ``SlowConsumerError`` once the queue overflowed."""
        while not self._items:
            if self.overflowed:
                raise SlowConsumerError
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()


class ActivityHub:
    """The process's listener on the activity group and its local subscribers."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, subscriber: Subscriber) -> None:
        """Add a subscriber; returns once the listener is in the group."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="pulse-activity-hub")
        self._subscribers.add(subscriber)
        await self._listening.wait()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS must be configured"
        attempt = 0
        while True:
            try:
                channel = await layer.new_channel("pulse.hub.")
                await layer.group_add(ACTIVITY_GROUP, channel)
                self._listening.set()
                attempt = 0
                while True:
                    message = await layer.receive(channel)
                    await self.dispatch([int(message["id"])])
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                attempt += 1
                logger.exception("Activity listener failed; retrying in %ss", delay)
                await asyncio.sleep(delay)

    async def dispatch(self, activity_ids: Iterable[int]) -> None:
        """Deliver activities (read once for the whole process) to local subscribers."""
        if not self._subscribers:
            return
        loaded = await sync_to_async(selectors.activities_by_id)(list(activity_ids))
        for activity, event in loaded:
            for subscriber in list(self._subscribers):
                if subscriber.filter.accepts(activity):
                    subscriber.push((activity, event))


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ActivityHub] = (
    weakref.WeakKeyDictionary()
)


def get_hub() -> ActivityHub:
    """The hub of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = ActivityHub()
    return hub
