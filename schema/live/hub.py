"""The process's one listener on the activity log, feeding the live engine.

The publisher sends each committed activity's id once to the channel-layer group.
Here each process's single listener receives it, and reads the log after the last id
it delivered: a notification is only a doorbell (a periodic read every
``POLL_SECONDS`` is the safety net), the log is the truth. Activity ids commit in id
order (``events.services``), so every activity is delivered once, in order, even when
notifications arrive late, out of order or not at all (a Redis outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection

from backend.metrics import record_lag
from events import selectors
from events.publisher import ACTIVITY_GROUP
from events.selectors import ActivityWithEvent

if TYPE_CHECKING:
    from schema.live.engine import LiveEngine

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_SECONDS = (0.5, 1, 2, 5)
POLL_SECONDS = 5.0  # safety net for lost notifications
PUBLISHED_AT_LIMIT = 10_000  # publish times held for activities not yet delivered


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


class LogListener:
    """Rings on each published activity and hands every new log batch to the engine."""

    def __init__(self, engine: LiveEngine) -> None:
        self.engine = engine
        self._ready = asyncio.Event()
        self._doorbell = asyncio.Event()
        self.delivered_id = 0
        self._tasks: list[asyncio.Task[None]] = []
        # Publish time of each notified activity, until it is delivered (lag metric).
        self._published_at: dict[int, float] = {}

    async def started(self) -> None:
        """Start listening if not yet (or again after a crash); returns once listening."""
        if not self._tasks or any(task.done() for task in self._tasks):
            self._start()
        await self._ready.wait()

    def _start(self) -> None:
        for task in self._tasks:
            task.cancel()
        # A fresh context each: the first subscriber's log context (connection_id,
        # user_id) must not stick to everything the listener logs for the whole process.
        self._tasks = [
            asyncio.create_task(
                self._listen(), name="pulse-log-listen", context=contextvars.Context()
            ),
            asyncio.create_task(
                self._deliver(), name="pulse-log-deliver", context=contextvars.Context()
            ),
        ]

    async def _listen(self) -> None:
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS must be configured"
        attempt = 0
        while True:
            try:
                if not self._ready.is_set():
                    self.delivered_id = await read_log(selectors.latest_activity_id)
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
        attempt = 0
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
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # reading the log failed (the database is away)
                delay = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
                attempt += 1
                logger.exception("Reading the activity log failed; retrying in %ss", delay)
                await asyncio.sleep(delay)

    def _note_published(self, message: dict[str, object]) -> None:
        """Remember when a notified activity was published (``events.publisher``)."""
        activity_id, published_at = message.get("id"), message.get("published_at")
        if not isinstance(activity_id, int) or not isinstance(published_at, int | float):
            return
        if activity_id > self.delivered_id:  # else a catch-up already read it
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
        """Deliver every activity after the last delivered one to the engine.

        The position advances past each batch whatever its delivery did: the engine
        isolates faults per subscriber and shape, and a batch is never retried.
        """
        if not self.engine.count:
            latest = await read_log(selectors.latest_activity_id)
            self.delivered_id = max(self.delivered_id, latest)
            self._published_at.clear()
            return
        while True:
            rows = await read_log(
                selectors.log_after,
                after_id=self.delivered_id,
                limit=settings.PULSE_REPLAY_BATCH_SIZE,
            )
            if rows:
                try:
                    await self.engine.deliver(rows)
                except Exception:  # the engine's own isolation failed: never retry
                    logger.exception("Live delivery of a batch failed; moving on")
                finally:
                    self.delivered_id = rows[-1][0].pk
                    self._record_lag(rows)
            if len(rows) < settings.PULSE_REPLAY_BATCH_SIZE:
                return
