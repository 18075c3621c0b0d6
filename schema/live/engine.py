"""The live engine: every live subscription of a process, whatever its transport.

An adapter (one per protocol: ``graphql_transport_ws``, ``graphql_ws``, ...) hands the
engine an operation and a :class:`Sink`, its side of the subscription. The engine runs
the document through strawberry (validation, extensions, the root field's resolver,
which files what it streams), joins the subscriber to its shape, replays the log after
its cursor, and switches it to live with no gap and no duplicate. The process's log
listener (``schema.live.hub``) hands every new batch to :meth:`LiveEngine.deliver`,
which executes each shape once per activity and audience, encodes once per protocol
and message id, and writes to each subscriber.

Each subscriber is a unit of failure: a write that raises or a connection that is gone
ends that subscriber; an execution that raises ends the subscribers of that shape.
Either way the fault is counted (``pulse_subscriber_faults_total``) and logged once,
and the delivery carries on for everyone else.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import weakref
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from graphql import GraphQLError
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from backend.metrics import (
    DELIVERIES_LIVE,
    DELIVERIES_REPLAY,
    DROPPED_QUEUE_FULL,
    SUBSCRIBER_FAULTS,
    SUBSCRIPTIONS_ACTIVE,
)
from events.visibility import Audience
from schema.errors import bad_resume_cursor, internal_error, slow_consumer
from schema.live import streams
from schema.live.hub import STATE_POSITION, Log, LogListener
from schema.live.shapes import Shape, shape_key
from schema.live.streams import ACTIVITY_LOG

if TYPE_CHECKING:
    from strawberry.schema import BaseSchema as Schema
    from strawberry.types.graphql import OperationType

logger = logging.getLogger(__name__)

FANOUT_SLICE = 128  # subscriber writes between returns to the event loop
ENDING_TIMEOUT_SECONDS = 5.0  # for telling a faulty subscriber why it ends


class Item(NamedTuple):
    """One encoded execution result, at its position in the log."""

    position: int  # the entry's id in its log: order and dedup (``STATE_POSITION``: neither)
    cursor: str  # what a client passes back to resume after it
    payload: bytes  # JSON of the execution result, shared by everyone in its audience


class AdapterError(Exception):
    """An adapter failed to turn items into its protocol's messages."""


class Sink(Protocol):
    """An adapter's side of one operation: its protocol's messages, nothing else."""

    @property
    def encoding(self) -> Hashable:
        """Sinks with equal encodings turn the same items into the same bytes."""

    def encode(self, items: Sequence[Item]) -> Any:
        """The protocol's ``next`` messages for ``items``, ready for :meth:`write`."""

    async def write(self, encoded: Any) -> None:
        """Send what :meth:`encode` made; raising ends this subscriber alone."""

    def is_open(self) -> bool:
        """Whether the connection can still take messages."""

    async def send_result(self, result: ExecutionResult) -> None:
        """Send one result of a query, mutation or failed subscription."""

    async def reject(self, result: PreExecutionError) -> None:
        """Refuse the operation: it did not parse or validate."""

    async def complete(self) -> None:
        """End the operation normally."""

    async def fail(self, errors: list[GraphQLError]) -> None:
        """End the operation with the protocol's error form."""

    async def abort(self) -> None:
        """Close the connection after a fault (best effort)."""


@dataclass(eq=False)
class Subscriber:
    """One live subscription: a sink, its viewer and its place in its shape."""

    shape: Shape
    viewer_id: int | None
    sink: Sink
    live: bool = False
    last_id: int = 0
    overflowed: bool = False
    ended: bool = False
    # Live items that arrive while the replay runs; ``None`` once live (saves memory).
    pending: collections.deque[Item] | None = field(default=None, repr=False)

    async def offer(self, items: list[Item], encoded_cache: dict[Hashable, Any]) -> int:
        """Write ``items`` when live, queue them (bounded) while replaying; how many
        were written. ``encoded_cache`` shares encodings between equal sinks."""
        if self.ended:
            return 0
        if not self.live:
            if self.pending is None:
                self.pending = collections.deque()
            for item in items:
                if len(self.pending) >= settings.PULSE_SUBSCRIBER_QUEUE_SIZE:
                    self.overflowed = True
                    return 0
                self.pending.append(item)
            return 0
        if items[0].position <= self.last_id:
            items = [item for item in items if is_new(item, self.last_id)]
            if not items:
                return 0
        self.last_id = max(self.last_id, max(item.position for item in items))
        key = (self.sink.encoding, items[0].position, len(items))
        encoded = encoded_cache.get(key)
        if encoded is None:
            try:
                encoded = encoded_cache[key] = self.sink.encode(items)
            except Exception as error:
                raise AdapterError("The sink could not encode its items") from error
        await self.sink.write(encoded)
        return len(items)


class LiveEngine:
    """The live subscriptions of one event loop (one server process), by shape."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.shapes: dict[str, Shape] = {}
        self.count = 0
        self.listeners: dict[str, LogListener] = {}
        self._listening: collections.Counter[str] = collections.Counter()  # by log name
        self._endings: set[asyncio.Task[None]] = set()

    @property
    def listener(self) -> LogListener:
        """The activity log's listener."""
        return self.listener_for(ACTIVITY_LOG)

    def listener_for(self, log: Log) -> LogListener:
        """The process's one listener on ``log`` (made on first use)."""
        listener = self.listeners.get(log.name)
        if listener is None:
            listener = self.listeners[log.name] = LogListener(self, log)
        return listener

    def listening(self, log: Log) -> bool:
        """Whether any subscriber streams from ``log``."""
        return self._listening[log.name] > 0

    async def run(
        self,
        *,
        query: str | None,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: Any,
        viewer_id: int | None,
        sink: Sink,
        allowed_operation_types: Sequence[OperationType] | None = None,
        resume_cursor: str | None = None,
    ) -> Subscriber | None:
        """Run one operation for an adapter.

        A query or mutation, or a subscription that fails before it streams, gets its
        result and ends here (``None``). A subscription returns its live subscriber,
        which the adapter hands back to :meth:`end` when the client stops it.
        ``resume_cursor`` (SSE's ``Last-Event-ID``) replays from there instead of ``after``.
        """
        filed, stop_collecting = streams.collecting()
        try:
            source = await self.schema.stream(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=allowed_operation_types,
            )
            async with aclosing(source):
                # A query or mutation yields one result; a live field yields none.
                result = await anext(source, None)
        finally:
            stop_collecting()
        if isinstance(result, PreExecutionError):
            await sink.reject(result)
            return None
        if result is not None or not filed:
            if isinstance(result, ExecutionResult):
                await sink.send_result(result)
            await sink.complete()
            return None
        (request,) = filed  # a subscription has exactly one root field
        stream = request.stream
        after_id = stream.after_id
        if resume_cursor is not None:
            after_id = stream.resume_after(resume_cursor)
            if after_id is None:
                await sink.send_result(ExecutionResult(data=None, errors=[bad_resume_cursor()]))
                await sink.complete()
                return None
        live_variables = {
            name: value
            for name, value in (variables or {}).items()
            if name != request.cursor_variable
        }
        key = shape_key(query or "", operation_name, live_variables)
        shape = self.shapes.get(key)
        if shape is None:
            shape = self.shapes[key] = Shape(
                key, self.schema, query or "", operation_name, variables, stream
            )
        subscriber = Subscriber(shape, viewer_id, sink)
        self._add(subscriber)
        try:
            # Listening before the replay reads the log.
            await self.listener_for(stream.log).started()
            if await self._go_live(subscriber, after_id):
                return subscriber
            return None
        except BaseException:
            self.end(subscriber)
            raise

    async def _go_live(self, subscriber: Subscriber, after_id: int | None) -> bool:
        """Replay after ``after_id``, then what came live meanwhile; the seam.

        The subscriber joined its shape before the log was read, so an activity
        committed during the replay is in the replay or in ``pending`` (or both; ids
        already sent are skipped). ``False`` when it ended with ``SLOW_CONSUMER``.
        """
        last_id = await self._replay(subscriber, after_id) if after_id is not None else 0
        while subscriber.pending:
            item = subscriber.pending.popleft()
            if is_new(item, last_id):
                last_id = max(last_id, item.position)
                await subscriber.sink.write(subscriber.sink.encode([item]))
                DELIVERIES_LIVE.inc()
        if subscriber.overflowed:
            DROPPED_QUEUE_FULL.inc()
            self.end(subscriber)
            await subscriber.sink.fail([slow_consumer(subscriber.shape.stream.cursor(last_id))])
            return False
        subscriber.pending = None
        subscriber.last_id = last_id
        subscriber.live = True  # no await since ``pending`` was seen empty
        return True

    async def _replay(self, subscriber: Subscriber, after_id: int) -> int:
        """Send the log after ``after_id`` that the subscriber may see; the last id read."""
        shape, viewer_id = subscriber.shape, subscriber.viewer_id
        stream = shape.stream
        batch_size = settings.PULSE_REPLAY_BATCH_SIZE
        while True:
            rows = await database_sync_to_async(stream.replay_page)(
                viewer_id=viewer_id, after_id=after_id, limit=batch_size
            )
            items = []
            for entry in rows:
                position = after_id = stream.position(entry)
                seen_as = stream.audience(viewer_id, entry)
                if seen_as is not None:  # the page was read with the same rule
                    payload = await shape.execute(entry, seen_as)
                    items.append(Item(position, stream.cursor(position), payload))
            if items:
                await subscriber.sink.write(subscriber.sink.encode(items))
                DELIVERIES_REPLAY.inc(len(items))
            if len(rows) < batch_size:
                return after_id

    def _add(self, subscriber: Subscriber) -> None:
        subscriber.shape.viewers[subscriber.viewer_id].add(subscriber)
        self.count += 1
        self._listening[subscriber.shape.stream.log.name] += 1

    def end(self, subscriber: Subscriber) -> None:
        """Take a subscriber out of the fan-out (idempotent); it gets nothing more."""
        if subscriber.ended:
            return
        subscriber.ended = True
        self.count -= 1
        self._listening[subscriber.shape.stream.log.name] -= 1
        shape = subscriber.shape
        viewers = shape.viewers.get(subscriber.viewer_id)
        if viewers is not None:
            viewers.discard(subscriber)
            if not viewers:
                del shape.viewers[subscriber.viewer_id]
        if not shape.viewers and self.shapes.get(shape.key) is shape:
            del self.shapes[shape.key]

    async def deliver(self, rows: Sequence[Any], log: Log = ACTIVITY_LOG) -> None:
        """Fan a batch of ``log``'s entries out to its live subscribers; never raises.

        Each shape is executed once per activity and audience; each subscriber gets
        everything of the batch meant for it in one write, and subscribers of one
        audience and encoding share the encoded bytes. Deliveries are counted once
        per batch, not per write.
        """
        delivered = written = 0
        cursors: dict[int, str] = {}
        for shape in list(self.shapes.values()):
            stream = shape.stream
            if stream.log is not log:
                continue
            accepted = [entry for entry in rows if stream.matches(entry)]
            if not accepted:
                continue
            try:
                batches = await self._execute(shape, accepted, cursors)
            except Exception as error:
                self._fault_shape(shape, error)
                continue
            for subscribers, items in batches:
                encoded_cache: dict[Hashable, Any] = {}
                for subscriber in list(subscribers):
                    if not subscriber.sink.is_open():
                        self._fault(subscriber, "gone")
                        continue
                    try:
                        delivered += await subscriber.offer(items, encoded_cache)
                    except AdapterError as error:
                        self._fault(subscriber, "adapter", error)
                    except Exception as error:
                        self._fault(subscriber, "write", error)
                    written += 1
                    if written % FANOUT_SLICE == 0:
                        # Let the loop run what is ready (requests waiting on the
                        # database thread) between slices of writes.
                        await asyncio.sleep(0)
        if delivered:
            DELIVERIES_LIVE.inc(delivered)

    async def _execute(
        self, shape: Shape, rows: list[Any], cursors: dict[int, str]
    ) -> list[tuple[set[Subscriber], list[Item]]]:
        """Each viewer group's items, executing once per entry and audience."""
        stream = shape.stream
        payloads: dict[tuple[int, Audience], bytes] = {}
        batches = []
        for viewer_id, subscribers in list(shape.viewers.items()):
            items = []
            for index, entry in enumerate(rows):
                seen_as = stream.audience(viewer_id, entry)
                if seen_as is None:
                    continue
                payload = payloads.get((index, seen_as))
                if payload is None:
                    payload = await shape.execute(entry, seen_as)
                    payloads[(index, seen_as)] = payload
                position = stream.position(entry)
                cursor = cursors.get(position)
                if cursor is None:
                    cursor = cursors[position] = stream.cursor(position)
                items.append(Item(position, cursor, payload))
            if items:
                batches.append((subscribers, items))
        return batches

    def _fault(self, subscriber: Subscriber, reason: str, error: Exception | None = None) -> None:
        """End one subscriber after a fault of its own: counted, logged once, told why."""
        self.end(subscriber)
        SUBSCRIBER_FAULTS.labels(reason=reason).inc()
        logger.warning("Live subscriber ended (%s)", reason, exc_info=error)
        if reason != "gone":
            self._tell_and_close(subscriber.sink, close=reason == "write")

    def _fault_shape(self, shape: Shape, error: Exception) -> None:
        """End every subscriber of a shape whose execution raised (logged once)."""
        logger.error("Executing a live shape failed; ending its subscribers", exc_info=error)
        ending = [s for subscribers in shape.viewers.values() for s in subscribers]
        for subscriber in ending:
            self.end(subscriber)
            SUBSCRIBER_FAULTS.labels(reason="execution").inc()
            self._tell_and_close(subscriber.sink, close=False)

    def _tell_and_close(self, sink: Sink, *, close: bool) -> None:
        """Send the protocol's error (and close the connection) without holding up the
        fan-out; bounded by ``ENDING_TIMEOUT_SECONDS``."""

        async def ending() -> None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(ENDING_TIMEOUT_SECONDS):
                    with contextlib.suppress(Exception):
                        await sink.fail([internal_error()])
                    if close:
                        await sink.abort()

        task = asyncio.get_running_loop().create_task(ending())
        self._endings.add(task)
        task.add_done_callback(self._endings.discard)


def is_new(item: Item, last_id: int) -> bool:
    """Whether a subscriber that has ``last_id`` still needs ``item`` (state always)."""
    return item.position > last_id or item.position == STATE_POSITION


_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LiveEngine] = (
    weakref.WeakKeyDictionary()
)


def get_engine(schema: Schema) -> LiveEngine:
    """The live engine of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    engine = _engines.get(loop)
    if engine is None:
        engine = _engines[loop] = LiveEngine(schema)
    return engine


def active_subscriptions() -> int:
    """Live subscriptions in every engine of this process (read when scraped)."""
    return sum(engine.count for engine in list(_engines.values()))


SUBSCRIPTIONS_ACTIVE.set_function(active_subscriptions)
