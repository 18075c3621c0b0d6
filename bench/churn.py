"""Connection churn: how many subscribers per second can connect, authenticate,
subscribe (with a replay of the log where the server has one) and close?

A **cycle** is one subscriber's whole life, on a fresh TCP connection:

- **WebSocket** (``graphql-transport-ws``): connect and upgrade, ``connection_init``
  with ``{"authorization": "Bearer <token>"}``, ``connection_ack``, ``subscribe``;
  then the **subscribed point**: with a replay, the last of the ``replay`` items that
  ``after`` asked for arrived (each checked: the right events, in order, once); without
  one (the stock pattern and the bare app keep no log), the ``pong`` answering a
  ``ping`` sent right after ``subscribe`` arrived: the server has read the subscription
  and the next message after it (graphql-transport-ws has no subscribe acknowledgement).
  Then ``complete``, a close frame (1000), and the server's close frame back.
- **SSE** (``graphql-sse``, distinct connections): ``GET /graphql/stream?query=...&
  variables={"after": ...}`` with ``Authorization: Bearer <token>``, the ``200
  text/event-stream`` head, the ``replay`` items; then the client drops the connection,
  as ``EventSource.close()`` does.

A cycle's time runs from the start of the TCP connect to the end of the close (the
server's close frame, or the connection dropped). ``concurrency`` cycles are in flight,
each slot starting its next cycle as soon as its last one ended; ``cycles`` in all,
bounded by a per-cycle timeout and a cap on the whole phase.

Scenario (h) runs WebSocket cycles without a subscription (``subscribe=False``: the
cycle closes right after ``connection_ack``) with its own accounts (``tokens``): each
slot rotates over its own share of them, so no two cycles in flight are one user's.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import (
    SUBSCRIPTION,
    Publisher,
    PublishError,
    Target,
    Transport,
    client_cpu_seconds,
    graphql_http,
    percentile,
    process_cpu_seconds,
    sign_up,
)
from bench.sseclient import SSEClient
from bench.wsclient import WebSocketClient

REPLAY_SUBSCRIPTION = (
    "subscription($after: String) { activity(after: $after) { cursor kind message "
    "actor { username } event { ... on StatusChange { status } } } }"
)
ACTIVITIES = (
    "query($after: String, $first: Int) { activities(after: $after, first: $first) "
    "{ cursor event { ... on StatusChange { status } } } }"
)
SEED_PHASE = "fseed"
SLOTS_PER_USER = 4  # churn slots sharing one user (Pulse caps WebSockets per user at 20)


@dataclass(frozen=True)
class ChurnPlan:
    """``cycles`` subscriber lives, ``concurrency`` at a time; each replays ``replay``
    activities (0: the server keeps no log; subscribed at the pong)."""

    name: str
    cycles: int
    concurrency: int
    replay: int
    transport: Transport = "ws"
    cycle_timeout: float = 30.0
    cap_seconds: float = 300.0
    settle_seconds: float = 0.5  # after the last cycle, so the server sees the last closes
    tokens: tuple[str, ...] = ()  # accounts given (no sign-ups): slot n uses [n::concurrency]
    subscribe: bool = True  # False: connect, connection_init, connection_ack, close (WS)


@dataclass
class ChurnResult:
    """What one churn phase measured (times in ms unless named otherwise)."""

    name: str
    transport: str
    subscribed_point: str
    cycles_planned: int
    concurrency: int
    users: int
    replay: int
    setup_seconds: float
    cycles_started: int = 0
    cycles_ok: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # first cycle started -> last cycle ended
    cycles_per_second: float | None = None
    server_cpu_seconds: float | None = None
    cpu_ms_per_cycle: float | None = None
    client_cpu_seconds: float = 0.0
    cycle_p50_ms: float | None = None
    cycle_p99_ms: float | None = None
    cycle_max_ms: float | None = None
    subscribed_p50_ms: float | None = None
    subscribed_p99_ms: float | None = None
    items_received: int = 0
    keepalive_comments: int = 0
    capped: bool = False


class CycleError(Exception):
    """A cycle did not go as the protocol says."""


@dataclass
class Replay:
    """What each cycle subscribes after, and the statuses it must then receive."""

    cursor: str | None
    statuses: list[str]


async def prepare(target: Target, plan: ChurnPlan) -> tuple[list[str | None], Replay]:
    """Tokens for the churn slots and, with a replay, a log with ``plan.replay`` seed
    activities at its end and the cursor just before them."""
    users = max(1, -(-plan.concurrency // SLOTS_PER_USER))
    if target.token is None:  # no accounts on this server: the payload is still sent
        return [None] * users, Replay(None, [])
    tokens: list[str | None] = list(plan.tokens)
    for number in range(0 if tokens else users):
        tokens.append(await sign_up(target.host, target.port, f"churn{number}"))
    if not plan.replay:
        return tokens, Replay(None, [])
    publisher = Publisher(target)
    statuses = []
    try:
        for seq in range(plan.replay):
            status = f"bench:{SEED_PHASE}:{seq}:{time.time_ns()}"
            await publisher.publish(status)
            statuses.append(status)
    finally:
        await publisher.close()
    log: list[dict[str, Any]] = []
    after = None
    for _ in range(1000):  # pages of 100; the log here is a few dozen activities
        page = await graphql_http(
            target.host, target.port, ACTIVITIES, {"after": after, "first": 100}, target.token
        )
        if page.get("errors"):
            raise PublishError(f"activities query failed: {json.dumps(page)[:300]}")
        items = page["data"]["activities"]
        log += items
        if len(items) < 100:
            break
        after = items[-1]["cursor"]
    found = [i for i, item in enumerate(log) if _status(item) == statuses[0]]
    if not found or found[0] == 0:
        raise PublishError("the first seed activity is not in the log, or nothing precedes it")
    start = found[0]
    tail = [_status(item) for item in log[start:]]
    if tail != statuses:
        raise PublishError(f"the log does not end with the {plan.replay} seed activities")
    return tokens, Replay(log[start - 1]["cursor"], statuses)


def _status(item: dict[str, Any]) -> str | None:
    event = item.get("event") or {}
    status = event.get("status")
    return str(status) if status is not None else None


class Cycle:
    """One subscriber's life; raises ``CycleError`` (or a timeout) when it goes wrong."""

    def __init__(
        self, target: Target, token: str | None, replay: Replay, subscribe: bool = True
    ) -> None:
        self.target, self.token, self.replay = target, token, replay
        self.subscribe = subscribe
        self.subscribed_ns = 0
        self.items = 0
        self.comments = 0

    def _check(self, status: str) -> None:
        expected = self.replay.statuses
        if self.items >= len(expected) or status != expected[self.items]:
            raise CycleError(f"replayed item {self.items} is not seed {self.items}: {status!r}")
        self.items += 1

    async def run(self) -> None:
        if self.target.transport == "sse":
            await self._sse()
        else:
            await self._ws()

    async def _ws(self) -> None:
        target, loop = self.target, asyncio.get_running_loop()
        began = time.perf_counter_ns()
        _, ws = await loop.create_connection(
            lambda: WebSocketClient(
                target.host, target.port, target.ws_path, "graphql-transport-ws"
            ),
            target.host,
            target.port,
        )
        try:
            await ws.open
            params = {"authorization": f"Bearer {self.token}"} if self.token else {}
            ws.send_text(json.dumps({"type": "connection_init", "payload": params}))
            await self._next_ws(ws, {"connection_ack"})
            if not self.subscribe:  # connected and authenticated is the point
                self.subscribed_ns = time.perf_counter_ns() - began
                ws.close(1000)
                await ws.closed
                return
            variables = {"after": self.replay.cursor} if self.replay.cursor else None
            query = REPLAY_SUBSCRIPTION if self.replay.cursor else SUBSCRIPTION
            subscribe: dict[str, Any] = {"query": query}
            if variables:
                subscribe["variables"] = variables
            ws.send_text(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
            if self.replay.statuses:
                while self.items < len(self.replay.statuses):
                    message = await self._next_ws(ws, {"next"})
                    payload = message.get("payload") or {}
                    if payload.get("errors"):
                        raise CycleError(f"next with errors: {json.dumps(payload)[:200]}")
                    self._check(payload["data"]["activity"]["event"]["status"])
            else:
                ws.send_text('{"type":"ping"}')
                await self._next_ws(ws, {"pong"})
            self.subscribed_ns = time.perf_counter_ns() - began
            ws.send_text('{"id":"1","type":"complete"}')
            ws.close(1000)
            await ws.closed
        finally:
            ws.abort()

    @staticmethod
    async def _next_ws(ws: WebSocketClient, wanted: set[str]) -> dict[str, Any]:
        for _ in range(1000):
            message: dict[str, Any] = json.loads(await ws.next_text())
            kind = message.get("type")
            if kind in wanted:
                return message
            if kind == "ping":
                ws.send_text('{"type":"pong"}')
            elif kind != "pong":
                raise CycleError(f"expected {sorted(wanted)}, got {json.dumps(message)[:200]}")
        raise CycleError("too many frames")

    async def _sse(self) -> None:
        target, loop = self.target, asyncio.get_running_loop()
        began = time.perf_counter_ns()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        variables = {"after": self.replay.cursor} if self.replay.cursor else None
        query = REPLAY_SUBSCRIPTION if self.replay.cursor else SUBSCRIPTION
        path = target.sse_target(query, variables)
        _, stream = await loop.create_connection(
            lambda: SSEClient(target.host, target.port, path, headers=headers),
            target.host,
            target.port,
        )
        try:
            await stream.open
            while self.items < len(self.replay.statuses):
                name, data, event_id = await stream.next_event()
                if name != b"next":
                    raise CycleError(f"unexpected {name!r} event: {data[:200]!r}")
                result = json.loads(data)
                if result.get("errors"):
                    raise CycleError(f"next with errors: {data[:200]!r}")
                activity = result["data"]["activity"]
                if event_id is None or event_id.decode() != activity["cursor"]:
                    raise CycleError("next event whose id is not its activity's cursor")
                self._check(activity["event"]["status"])
            self.subscribed_ns = time.perf_counter_ns() - began
            stream.close()
            await stream.closed
        finally:
            self.comments = stream.comments
            stream.abort()


async def run_churn(target: Target, plan: ChurnPlan, server_pid: int | None) -> ChurnResult:
    """Prepare (accounts, seed log: not measured), then run the cycles and measure."""
    began_setup = time.monotonic()
    tokens, replay = await prepare(target, plan)
    count = len(replay.statuses)
    point = f"{count} replayed items received" if count else "pong after subscribe"
    result = ChurnResult(
        name=plan.name,
        transport=target.transport,
        subscribed_point=point if plan.subscribe else "connection_ack (no subscription)",
        cycles_planned=plan.cycles,
        concurrency=plan.concurrency,
        users=len(tokens) if tokens[0] is not None else 0,
        replay=len(replay.statuses),
        setup_seconds=time.monotonic() - began_setup,
    )
    failures: collections.Counter[str] = collections.Counter()
    cycle_ns: list[int] = []
    subscribed_ns: list[int] = []
    sequence = iter(range(plan.cycles))
    await asyncio.sleep(0.5)
    cpu_before = process_cpu_seconds(server_pid) if server_pid else None
    client_before = client_cpu_seconds()
    started = time.monotonic()
    deadline = started + plan.cap_seconds
    last_end = started

    async def slot(number: int) -> None:
        nonlocal last_end
        if plan.tokens:  # this slot's own share, in turn
            mine = tokens[number :: plan.concurrency] or tokens
        else:  # SLOTS_PER_USER slots share each user
            mine = [tokens[(number // SLOTS_PER_USER) % len(tokens)]]
        for turn, _ in enumerate(sequence):
            if time.monotonic() >= deadline:
                result.capped = True
                break
            result.cycles_started += 1
            cycle = Cycle(target, mine[turn % len(mine)], replay, plan.subscribe)
            begin = time.perf_counter_ns()
            try:
                async with asyncio.timeout(plan.cycle_timeout):
                    await cycle.run()
            except Exception as error:  # every failure is counted, by kind
                failures[f"{type(error).__name__}: {str(error)[:160]}"] += 1
                continue
            finally:
                result.items_received += cycle.items
                result.keepalive_comments += cycle.comments
                last_end = max(last_end, time.monotonic())
            cycle_ns.append(time.perf_counter_ns() - begin)
            subscribed_ns.append(cycle.subscribed_ns)

    await asyncio.gather(*(slot(n) for n in range(plan.concurrency)))
    await asyncio.sleep(plan.settle_seconds)
    if server_pid and cpu_before is not None:
        result.server_cpu_seconds = process_cpu_seconds(server_pid) - cpu_before
    result.client_cpu_seconds = client_cpu_seconds() - client_before
    result.seconds = last_end - started
    result.cycles_ok = len(cycle_ns)
    result.failures = dict(failures)
    if result.cycles_ok and result.seconds > 0:
        result.cycles_per_second = result.cycles_ok / result.seconds
    if result.cycles_ok and result.server_cpu_seconds is not None:
        result.cpu_ms_per_cycle = result.server_cpu_seconds * 1e3 / result.cycles_ok
    cycles = sorted(v / 1e6 for v in cycle_ns)
    subscribed = sorted(v / 1e6 for v in subscribed_ns)
    result.cycle_p50_ms, result.cycle_p99_ms = percentile(cycles, 0.5), percentile(cycles, 0.99)
    result.cycle_max_ms = cycles[-1] if cycles else None
    result.subscribed_p50_ms = percentile(subscribed, 0.5)
    result.subscribed_p99_ms = percentile(subscribed, 0.99)
    return result
