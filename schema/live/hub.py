"""The process's listeners, one per log the live engine streams from.

A :class:`Log` is what a kind of subscription streams: the activity log, the
notifications, presence. The publisher sends each committed entry's id once to the
log's channel-layer group. Here each process's single listener per log receives it,
and reads the log after the last id it delivered: a message is only a doorbell (a
periodic read every ``POLL_SECONDS`` is the safety net), the log is the truth. Ids
commit in id order (``events.services``), so every entry is delivered once, in order,
even when doorbells arrive late, out of order or not at all (a Redis outage).

A log that is state, not history (presence), has no table: its entries travel in the
messages themselves (``Log.entry_from``), and a lost message is a lost transition.
Messages may also name *keys* whose state changed (a recipient's unread count): the
next read passes them to ``Log.read`` so it adds their current state.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection

from backend.metrics import record_lag

if TYPE_CHECKING:
    from schema.live.engine import LiveEngine

logger = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_SECONDS = (0.5, 1, 2, 5)
POLL_SECONDS = 5.0  # safety net for lost notifications
PUBLISHED_AT_LIMIT = 10_000  # publish times held for entries not yet delivered
PENDING_LIMIT = 10_000  # changed keys or pushed entries held until the next delivery


@dataclass(frozen=True)
class Log:
    """A source of live entries, in position order, that a listener tails.

    ``read(after_id=, limit=, changed=)`` returns the entries after ``after_id`` (at
    most ``limit`` in position order), followed by an entry of state for each key in
    ``changed`` (position ``STATE_POSITION``); ``latest_id()`` is where a new listener
    starts. A log with ``entry_from`` instead is pushed: each message is one entry.
    """

    name: str
    group: str
    position: Callable[[Any], int]
    written_at: Callable[[Any], float]
    read: Callable[..., list[Any]] | None = None
    latest_id: Callable[[], int] | None = None
    entry_from: Callable[[dict[str, Any]], Any] | None = None
    changed_keys: Callable[[dict[str, Any]], list[int]] | None = None


STATE_POSITION = -1  # an entry of state (a count), never replayed nor deduplicated


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
    """Rings on each published entry and hands every new batch of one log to the engine."""

    def __init__(self, engine: LiveEngine, log: Log) -> None:
        self.engine = engine
        self.log = log
        self._ready = asyncio.Event()
        self._doorbell = asyncio.Event()
        self.delivered_id = 0
        self._tasks: list[asyncio.Task[None]] = []
        # Publish time of each notified entry, until it is delivered (lag metric).
        self._published_at: dict[int, float] = {}
        self._changed: set[int] = set()  # keys whose state to read with the next batch
        self._pushed: collections.deque[Any] = collections.deque(maxlen=PENDING_LIMIT)

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
        name = self.log.name
        self._tasks = [
            asyncio.create_task(
                self._listen(), name=f"pulse-{name}-listen", context=contextvars.Context()
            ),
            asyncio.create_task(
                self._deliver(), name=f"pulse-{name}-deliver", context=contextvars.Context()
            ),
        ]

    async def _listen(self) -> None:
        layer = get_channel_layer()
        assert layer is not None, "CHANNEL_LAYERS must be configured"
        attempt = 0
        while True:
            try:
                if not self._ready.is_set() and self.log.latest_id is not None:
                    self.delivered_id = await read_log(self.log.latest_id)
                channel = await layer.new_channel("pulse.hub.")
                await layer.group_add(self.log.group, channel)
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
                logger.exception("%s listener failed; retrying in %ss", self.log.name, delay)
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
                logger.exception("Reading the %s log failed; retrying in %ss", self.log.name, delay)
                await asyncio.sleep(delay)

    def _note_published(self, message: dict[str, Any]) -> None:
        """Note what a message says: an entry pushed, keys whose state changed, or when
        a logged entry was published (``events.publisher``)."""
        log = self.log
        if log.entry_from is not None:
            if (entry := log.entry_from(message)) is not None:
                self._pushed.append(entry)
            return
        if log.changed_keys is not None and len(self._changed) < PENDING_LIMIT:
            self._changed.update(log.changed_keys(message)[: PENDING_LIMIT - len(self._changed)])
        activity_id, published_at = message.get("id"), message.get("published_at")
        if not isinstance(activity_id, int) or not isinstance(published_at, int | float):
            return
        if activity_id > self.delivered_id:  # else a catch-up already read it
            if len(self._published_at) >= PUBLISHED_AT_LIMIT:
                self._published_at.clear()  # nobody delivers: the next catch-up ends that
            self._published_at[activity_id] = float(published_at)

    def _record_lag(self, rows: list[Any]) -> None:
        """One lag observation per entry delivered, from its publish time; from when it
        was written if its row was read before its doorbell came (or without one)."""
        now = time.time()
        published_at, log = self._published_at, self.log
        for entry in rows:
            position = log.position(entry)
            if position == STATE_POSITION:
                continue
            published = published_at.pop(position, None)
            if published is None:
                published = log.written_at(entry)
            record_lag(published, now)

    async def catch_up(self) -> None:
        """Deliver every entry after the last delivered one to the engine.

        The position advances past each batch whatever its delivery did: the engine
        isolates faults per subscriber and shape, and a batch is never retried.
        """
        log = self.log
        if log.read is None:  # pushed: what the messages carried
            entries = list(self._pushed)
            self._pushed.clear()
            if entries and self.engine.listening(log):
                await self._hand_over(entries)
            return
        changed, self._changed = self._changed, set()
        if not self.engine.listening(log):
            if log.latest_id is not None:
                latest = await read_log(log.latest_id)
                self.delivered_id = max(self.delivered_id, latest)
            self._published_at.clear()
            return
        while True:
            rows = await read_log(
                log.read,
                after_id=self.delivered_id,
                limit=settings.PULSE_REPLAY_BATCH_SIZE,
                changed=changed,
            )
            changed = set()
            logged = [row for row in rows if log.position(row) != STATE_POSITION]
            if rows:
                await self._hand_over(rows)
            if logged:
                self.delivered_id = log.position(logged[-1])
                self._record_lag(logged)
            if len(logged) < settings.PULSE_REPLAY_BATCH_SIZE:
                return

    async def _hand_over(self, entries: list[Any]) -> None:
        try:
            await self.engine.deliver(entries, self.log)
        except Exception:  # the engine's own isolation failed: never retry
            logger.exception("Live delivery of a batch failed; moving on")
