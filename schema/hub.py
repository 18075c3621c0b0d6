"""One listener per server process, fanning each activity out to its subscriptions.

The publisher sends each committed activity's id once to the channel-layer group.
Here, each process's single listener receives it once, reads the row and its event
once, and hands the result to every local subscription allowed to see it. The
per-subscriber cost is a visibility check and a bounded queue append.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection

from backend.metrics import SUBSCRIPTIONS_ACTIVE, record_lag
from events import selectors
from events.publisher import ACTIVITY_GROUP
from events.selectors import ActivityWithEvent
from schema.filters import ActivityFilter

if TYPE_CHECKING:
    from schema.live import SharedSubscription

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_SECONDS = (0.5, 1, 2, 5)


async def read_log(read: Callable[..., T], **kwargs: Any) -> T:
    """Run a log read on the database thread, keeping the listener's connection.

    Unlike channels' ``database_sync_to_async``, the connection is kept between reads
    (reconnecting for each batch cost a connect per batch and tripled p99 latency at
    10,000 subscribers); after a database error it is closed, so the next read, after
    the listener's retry delay, gets a fresh one (a restarted database is recovered).
    """
    return await sync_to_async(_read_or_reset)(read, kwargs)


def _read_or_reset(read: Callable[..., T], kwargs: dict[str, Any]) -> T:
    try:
        return read(**kwargs)
    except DatabaseError:
        connection.close()
        raise


POLL_SECONDS = 5.0  # safety net for lost notifications
PUBLISHED_AT_LIMIT = 10_000  # publish times held for activities not yet delivered


class SlowConsumerError(Exception):
    """The subscriber's queue overflowed; it must resume from its last cursor."""


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
    """The process's listener on the activity group and its local subscribers.

    A notification is only a doorbell: on each ring (and every ``POLL_SECONDS`` as a
    safety net) the hub reads the log after the last id it delivered. Activity ids
    commit in id order (see ``events.services``), so this delivers every activity once,
    in order, even when notifications arrive out of order, late, or not at all (a
    Redis outage): the next ring or poll catches up.
    """

    def __init__(self) -> None:
        from schema.live import SharedFanout

        self._subscribers: set[Subscriber] = set()
        self.fanout = SharedFanout()
        self._ready = asyncio.Event()
        self._doorbell = asyncio.Event()
        self._delivered_id = 0
        self._tasks: list[asyncio.Task[None]] = []
        # Publish time of each notified activity, until it is delivered (lag metric).
        self._published_at: dict[int, float] = {}

    async def subscribe(self, subscriber: Subscriber) -> None:
        """Add a subscriber; returns once the hub is listening."""
        if not self._tasks or any(task.done() for task in self._tasks):
            self._start()
        self._subscribers.add(subscriber)
        await self._ready.wait()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    async def subscribe_shared(self, subscription: SharedSubscription) -> None:
        """Add a shared-execution subscription; returns once the hub is listening."""
        if not self._tasks or any(task.done() for task in self._tasks):
            self._start()
        self.fanout.add(subscription)
        await self._ready.wait()

    def unsubscribe_shared(self, subscription: SharedSubscription) -> None:
        self.fanout.remove(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers) + self.fanout.count

    def _start(self) -> None:
        for task in self._tasks:
            task.cancel()
        # A fresh context each: the first subscriber's log context (connection_id,
        # user_id) must not stick to everything the hub logs for the whole process.
        self._tasks = [
            asyncio.create_task(
                self._listen(), name="pulse-hub-listen", context=contextvars.Context()
            ),
            asyncio.create_task(
                self._deliver(), name="pulse-hub-deliver", context=contextvars.Context()
            ),
        ]

    async def _listen(self) -> None:
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS must be configured"
        attempt = 0
        while True:
            try:
                if not self._ready.is_set():
                    self._delivered_id = await read_log(selectors.latest_activity_id)
                channel = await layer.new_channel("pulse.hub.")
                await layer.group_add(ACTIVITY_GROUP, channel)
                self._ready.set()
                self._doorbell.set()  # catch up on whatever was missed while away
                attempt = 0
                while True:
                    message = await layer.receive(channel)
                    self._note_published(message)
                    self._doorbell.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                attempt += 1
                logger.exception("Activity listener failed; retrying in %ss", delay)
                await asyncio.sleep(delay)

    async def _deliver(self) -> None:
        """Catch up on each ring; under a stream of rings, at most once per window.

        An activity after a quiet spell goes out at once. While activities keep coming,
        each catch-up waits until ``PULSE_FANOUT_WINDOW_SECONDS`` after the previous one
        began, so it carries several of them: each socket then gets one write for the
        batch instead of one per activity, which keeps the fan-out from crowding out
        the requests that create the activities.
        """
        await self._ready.wait()
        loop = asyncio.get_running_loop()
        previous = -float("inf")
        while True:
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._doorbell.wait(), POLL_SECONDS)
                pause = previous + settings.PULSE_FANOUT_WINDOW_SECONDS - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                self._doorbell.clear()
                previous = loop.time()
                await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Activity delivery failed; retrying")
                await asyncio.sleep(RETRY_SECONDS[-1])

    def _note_published(self, message: dict[str, object]) -> None:
        """Remember when a notified activity was published (``events.publisher``)."""
        activity_id, published_at = message.get("id"), message.get("published_at")
        if not isinstance(activity_id, int) or not isinstance(published_at, int | float):
            return
        if activity_id > self._delivered_id:  # else a catch-up already read it
            if len(self._published_at) >= PUBLISHED_AT_LIMIT:
                self._published_at.clear()  # nobody delivers: the next catch-up ends that
            self._published_at[activity_id] = float(published_at)

    def _record_lag(self, rows: list[ActivityWithEvent]) -> None:
        """One lag observation per activity delivered, from its publish time; from when
        it was written if its row was read before its notification came (or without)."""
        now = time.time()
        published_at = self._published_at
        for activity, _ in rows:
            published = published_at.pop(activity.pk, None)
            if published is None:
                published = activity.occurred_at.timestamp()
            record_lag(published, now)

    async def catch_up(self) -> None:
        """Deliver every activity after the last delivered one to local subscribers."""
        if not self.subscriber_count:
            latest = await read_log(selectors.latest_activity_id)
            self._delivered_id = max(self._delivered_id, latest)
            self._published_at.clear()
            return
        while True:
            rows = await read_log(
                selectors.log_after,
                after_id=self._delivered_id,
                limit=settings.PULSE_REPLAY_BATCH_SIZE,
            )
            for activity, event in rows:
                for subscriber in list(self._subscribers):
                    if subscriber.filter.accepts(activity):
                        subscriber.push((activity, event))
            if rows:
                await self.fanout.deliver(rows)
                self._delivered_id = rows[-1][0].pk
                self._record_lag(rows)
            if len(rows) < settings.PULSE_REPLAY_BATCH_SIZE:
                return


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ActivityHub] = (
    weakref.WeakKeyDictionary()
)


def active_subscriptions() -> int:
    """Subscriptions in every hub of this process (read when metrics are scraped)."""
    return sum(hub.subscriber_count for hub in list(_hubs.values()))


SUBSCRIPTIONS_ACTIVE.set_function(active_subscriptions)


def get_hub() -> ActivityHub:
    """The hub of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = ActivityHub()
    return hub
