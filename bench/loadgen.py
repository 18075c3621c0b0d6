"""An asyncio load generator for GraphQL subscriptions over graphql-transport-ws or SSE.

It opens N subscriber WebSockets (``connection_init`` → ``connection_ack`` →
``subscribe``) or N GraphQL-over-SSE streams (``GET /graphql/stream?query=...``, one
TCP connection each), at most ``open_concurrency`` handshakes at a time, then publishes
events over HTTP (a keep-alive connection) and records, for every delivery, the time
from just before the publish request was sent to the moment the subscriber's task got
the frame. Each event's status text carries its phase, its sequence number and its
send time (``bench:<phase>:<seq>:<time_ns>``), so a delivery is attributed exactly.

Also measures the server process through ``/proc``: CPU time (utime + stime, all
threads) consumed during a phase, and its resident memory (VmRSS, and the peak VmHWM).

Every wait has a bound: per-handshake and per-request timeouts, a cap on the opening
phase, and after publishing a drain that ends when everything arrived, when nothing
arrived for ``stall_seconds``, or after ``drain_cap_seconds`` in all.

Standalone use, against a server that is already running::

    python -m bench.loadgen --port 8000 --publish graphql --token TOKEN \
        --subscribers 1000 --events 60 [--rate 1] [--server-pid PID]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import json
import multiprocessing
import os
import re
import resource
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.sseclient import SSEClient
from bench.wsclient import WebSocketClient

TRANSPORT_WS = "graphql-transport-ws"
SUBSCRIPTION = (
    "subscription { activity { cursor kind message actor { username } "
    "event { ... on StatusChange { status } } } }"
)
NOTIFICATIONS = (
    "subscription { notifications { unreadCount notification { cursor kind "
    "activity { message } } } }"
)


def named_operation(document: str, name: str) -> str:
    """``document`` (one anonymous operation) with an operation name: a distinct
    document, so the server files it as a shape of its own."""
    keyword, _, rest = document.partition(" ")
    return f"{keyword} {name} {rest}"


CREATE_STATUS = "mutation($s: String!) { createStatusChange(input: {status: $s}) { id } }"
CREATE_USER = "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }"
LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }"
BENCH_PASSWORD = "correct horse 9 battery"  # noqa: S105 (a throwaway benchmark account)

PublishMode = Literal["graphql", "post"]
Transport = Literal["ws", "sse"]
RATE_CONNECTIONS = 64  # publish connections at most, when publishing at a fixed rate
TAG = re.compile(r"bench:(\w+):(\d+):(\d+)")


def parse_tag(text: str) -> tuple[str, int, int]:
    """(phase, seq, send time ns) of the tag ``bench:<phase>:<seq>:<time_ns>`` that
    starts a published status (the fast path) or that ``text`` quotes (an activity's
    message); ``ValueError`` if there is none."""
    if text.startswith("bench:"):
        _, phase, seq, sent_ns = text.split(" ", 1)[0].split(":")
        return phase, int(seq), int(sent_ns)
    match = TAG.search(text)
    if match is None:
        raise ValueError("no bench tag")
    return match[1], int(match[2]), int(match[3])


# Process helpers ---------------------------------------------------------------------


def raise_nofile_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE (soft, and hard when allowed) towards ``wanted``; the new soft."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((wanted, max(hard, wanted)), (min(wanted, hard), hard)):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in KiB."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in {"VmRSS", "VmHWM"}:
                found[name] = int(value.split()[0])
    return found


def client_cpu_seconds() -> float:
    """CPU time of this (load generator) process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


# HTTP --------------------------------------------------------------------------------


class HttpClient:
    """A minimal HTTP/1.1 client on asyncio streams keeping one connection alive."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Send one request and return (status, body); reconnects once if the peer left."""
        async with asyncio.timeout(self.timeout):
            reused = self._writer is not None
            try:
                return await self._exchange(method, path, body, headers or {})
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if not reused:
                    raise
            return await self._exchange(method, path, body, headers or {})

    async def _exchange(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("the server closed the connection")
        status = int(status_line.split()[1])
        response_headers: dict[str, str] = {}
        for _ in range(200):
            line = await reader.readline()
            if line in {b"\r\n", b"\n", b""}:
                break
            name, _, value = line.decode("latin-1").partition(":")
            response_headers[name.strip().lower()] = value.strip()
        if "content-length" in response_headers:
            data = await reader.readexactly(int(response_headers["content-length"]))
        elif response_headers.get("transfer-encoding", "").lower() == "chunked":
            data = await self._read_chunked(reader)
        else:
            data = await reader.read()
            response_headers["connection"] = "close"
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        return status, data

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        for _ in range(1_000_000):
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                for _ in range(100):  # trailers, then the blank line
                    if (await reader.readline()) in {b"\r\n", b"\n", b""}:
                        break
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return b"".join(chunks)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)


class PublishError(Exception):
    """A publish request did not succeed."""


@dataclass(frozen=True)
class Target:
    """Where the server under test listens and how it takes a publish."""

    host: str
    port: int
    publish: PublishMode  # "graphql": createStatusChange mutation; "post": POST /publish
    token: str | None = None
    ws_path: str = "/graphql/"
    transport: Transport = "ws"  # how subscribers connect: WebSocket, or SSE
    sse_path: str = "/graphql/stream"
    status_suffix: str = ""  # appended to every published status (g: the @mentions)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.ws_path}"

    def sse_target(self, query: str, variables: dict[str, Any] | None = None) -> str:
        """The request target of a distinct-connections SSE subscription (GET)."""
        params = {"query": query}
        if variables:
            params["variables"] = json.dumps(variables, separators=(",", ":"))
        return f"{self.sse_path}?{urllib.parse.urlencode(params)}"


class Publisher:
    """Publishes one event per request over its own keep-alive connection."""

    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.target = target
        self.http = HttpClient(target.host, target.port, timeout)

    async def publish(self, status: str) -> None:
        """Publish one event; raises ``PublishError`` unless it succeeded."""
        status += self.target.status_suffix
        headers = {"Content-Type": "application/json"}
        if self.target.publish == "post":
            code, data = await self.http.request(
                "POST", "/publish", json.dumps({"status": status}).encode(), headers
            )
            if code != 200:
                raise PublishError(f"HTTP {code}: {data[:300]!r}")
            return
        if self.target.token:
            headers["Authorization"] = f"Bearer {self.target.token}"
        body = json.dumps({"query": CREATE_STATUS, "variables": {"s": status}}).encode()
        code, data = await self.http.request("POST", "/graphql/", body, headers)
        if code != 200:
            raise PublishError(f"HTTP {code}: {data[:300]!r}")
        result = json.loads(data)
        if result.get("errors") or not result.get("data"):
            raise PublishError(f"GraphQL errors: {json.dumps(result)[:300]}")

    async def close(self) -> None:
        await self.http.close()


async def graphql_http(
    host: str, port: int, query: str, variables: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    """One GraphQL request over HTTP; the decoded body."""
    client = HttpClient(host, port)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        body = json.dumps({"query": query, "variables": variables}).encode()
        code, data = await client.request("POST", "/graphql/", body, headers)
    finally:
        await client.close()
    if code != 200:
        raise PublishError(f"HTTP {code}: {data[:300]!r}")
    result: dict[str, Any] = json.loads(data)
    return result


async def sign_up(host: str, port: int, username: str) -> str:
    """Create a Pulse user and return a bearer token for it."""
    user = {"username": username, "email": f"{username}@example.com", "password": BENCH_PASSWORD}
    created = await graphql_http(host, port, CREATE_USER, {"i": user})
    if created.get("errors"):
        raise PublishError(f"createUser failed: {created}")
    login = await graphql_http(host, port, LOGIN, {"u": username, "p": BENCH_PASSWORD})
    if login.get("errors"):
        raise PublishError(f"login failed: {login}")
    return str(login["data"]["login"]["token"])


# Subscribers -------------------------------------------------------------------------


@dataclass(eq=False)
class Subscriber:
    """One WebSocket or SSE stream with one subscription (``activity``, or for a
    signed-in watcher ``notifications``), and what it got."""

    conn: WebSocketClient | SSEClient
    phase: str = ""
    seen: set[int] = field(default_factory=set)
    warm: bool = False


@dataclass
class Tally:
    """Deliveries of one stream in the current phase: per event, once per subscriber."""

    subscribers: int = 0
    per_event: collections.Counter[int] = field(default_factory=collections.Counter)
    event_sent_ns: dict[int, int] = field(default_factory=dict)
    event_last_ns: dict[int, int] = field(default_factory=dict)
    received: int = 0  # every delivery of this phase, acked or not
    duplicates: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    last_receive_ns: int = 0

    def reset(self, subscribers: int) -> None:
        self.subscribers = subscribers
        self.per_event = collections.Counter()
        self.event_sent_ns, self.event_last_ns = {}, {}
        self.received = self.duplicates = 0
        self.latencies_ns = []
        self.last_receive_ns = 0

    def count(self, subscriber: Subscriber, seq: int, sent_ns: int, now_ns: int) -> None:
        if seq in subscriber.seen:
            self.duplicates += 1
            return
        subscriber.seen.add(seq)
        self.per_event[seq] += 1
        self.received += 1
        self.event_sent_ns[seq] = sent_ns
        self.event_last_ns[seq] = now_ns
        self.latencies_ns.append(now_ns - sent_ns)
        self.last_receive_ns = max(self.last_receive_ns, now_ns)


@dataclass
class Recorder(Tally):
    """Counts the deliveries of the current phase, per event, and their latencies: the
    ``activity`` subscribers' here, the notification watchers' in ``notes``.

    An event counts as published once its publish request succeeded (``acked``); a
    delivery of an event whose request failed or timed out is counted apart. Every
    published event is expected once by every activity subscriber and, when the phase
    has watchers (each event mentions them all), once by every watcher.
    """

    phase: str = ""
    acked: set[int] = field(default_factory=set)
    stale: int = 0  # frames of an earlier phase (a warm-up arriving late)
    first_send_ns: int = 0
    notes: Tally = field(default_factory=Tally)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    closed: collections.Counter[str] = field(default_factory=collections.Counter)
    closing: bool = False  # set when the load generator drops its own sockets

    def start(self, phase: str, subscribers: int, watchers: int = 0) -> None:
        self.phase = phase
        self.reset(subscribers)
        self.notes.reset(watchers)
        self.acked = set()
        self.stale = 0
        self.first_send_ns = 0

    @property
    def published(self) -> set[int]:
        """Events known to exist: their publish request succeeded, or someone got them.

        A request that timed out may still have been executed by a starved server.
        """
        return self.acked | self.per_event.keys() | self.notes.per_event.keys()

    @property
    def expected(self) -> int:
        return len(self.published) * self.subscribers

    @property
    def delivered(self) -> int:
        return self.received

    @property
    def notes_expected(self) -> int:
        return len(self.published) * self.notes.subscribers

    @property
    def all_received(self) -> int:
        return self.received + self.notes.received

    @property
    def complete(self) -> bool:
        return self.delivered >= self.expected and self.notes.received >= self.notes_expected

    @property
    def unacked_deliveries(self) -> int:
        """Deliveries of events whose publish request failed or timed out."""
        return sum(n for seq, n in self.per_event.items() if seq not in self.acked)

    def event_completion_ms(self) -> list[float]:
        """Per event: from its send to its last delivery, in ms."""
        return sorted(
            (last - self.event_sent_ns[seq]) / 1e6
            for seq, last in self.event_last_ns.items()
            if seq in self.event_sent_ns
        )

    def frame(self, subscriber: Subscriber, raw: str | bytes, now_ns: int) -> None:
        """Account for one frame received by ``subscriber``."""
        try:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "next":
                payload = message["payload"]
                if payload.get("errors"):
                    self.errors[f"next with errors: {json.dumps(payload['errors'])[:200]}"] += 1
                data = payload["data"]
                if "notifications" in data:
                    self._notification(subscriber, data["notifications"], now_ns)
                    return
                phase, seq, sent_ns = parse_tag(data["activity"]["event"]["status"])
                self._delivery(subscriber, phase, seq, sent_ns, now_ns)
            elif kind == "ping":
                if isinstance(subscriber.conn, WebSocketClient):
                    subscriber.conn.send_text('{"type":"pong"}')
            elif kind != "pong":
                self.errors[f"unexpected {kind} frame: {str(raw)[:200]}"] += 1
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            self.errors[f"unreadable frame ({error!r}): {str(raw)[:200]}"] += 1

    def _notification(self, subscriber: Subscriber, update: dict[str, Any], now_ns: int) -> None:
        """A watcher's ``notifications`` update: a new MENTION whose activity's message
        quotes the event's status (so its tag), with an unread count of at least 1."""
        notification = update.get("notification")
        if notification is None:  # a count-only update: nothing was read or removed here
            self.errors[f"count-only notification update: {json.dumps(update)[:200]}"] += 1
            return
        count = update.get("unreadCount")
        if not isinstance(count, int) or count < 1:
            self.errors[f"notification with unreadCount {count!r}"] += 1
        if notification.get("kind") != "MENTION" or not notification.get("cursor"):
            self.errors[f"unexpected notification: {json.dumps(notification)[:200]}"] += 1
        phase, seq, sent_ns = parse_tag(notification["activity"]["message"])
        self._delivery(subscriber, phase, seq, sent_ns, now_ns, self.notes)

    def sse_event(
        self, subscriber: Subscriber, name: bytes, data: bytes, event_id: bytes | None, now_ns: int
    ) -> None:
        """Account for one SSE event received by ``subscriber`` (comments never get here).

        A ``next`` event's data is the execution result itself; its ``id`` must be the
        activity's cursor (what ``Last-Event-ID`` resumes from).
        """
        try:
            if name != b"next":
                self.errors[f"unexpected {name!r} event: {data[:200]!r}"] += 1
                return
            result = json.loads(data)
            if result.get("errors"):
                self.errors[f"next with errors: {json.dumps(result['errors'])[:200]}"] += 1
            activity = result["data"]["activity"]
            if event_id is None or event_id.decode() != activity["cursor"]:
                self.errors["next event whose id is not its activity's cursor"] += 1
            phase, seq, sent_ns = parse_tag(activity["event"]["status"])
            self._delivery(subscriber, phase, seq, sent_ns, now_ns)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            self.errors[f"unreadable event ({error!r}): {data[:200]!r}"] += 1

    def _delivery(
        self,
        subscriber: Subscriber,
        phase: str,
        seq: int,
        sent_ns: int,
        now_ns: int,
        tally: Tally | None = None,
    ) -> None:
        if phase == "warm":
            subscriber.warm = True
        if phase != self.phase:
            self.stale += 1
            return
        if subscriber.phase != phase:
            subscriber.phase, subscriber.seen = phase, set()
        (tally or self).count(subscriber, seq, sent_ns, now_ns)


def _on_close(subscriber: Subscriber, recorder: Recorder) -> None:
    if not recorder.closing:  # closed by the server (or the network)
        conn = subscriber.conn
        code = "" if conn.close_code is None else f"{conn.close_code} "
        recorder.closed[f"{code}{conn.close_reason}".strip()] += 1


async def open_subscriber(
    target: Target,
    recorder: Recorder,
    handshake_seconds: float,
    token: str | None = None,
    query: str | None = SUBSCRIPTION,
) -> Subscriber:
    """Connect, initialise (signed in with ``token``, else anonymous) and subscribe to
    ``query`` (``None``: no subscription, the socket is only held open); frames then go
    straight to the recorder."""
    if target.transport == "sse":
        assert token is None and query == SUBSCRIPTION, "SSE subscribers are anonymous"
        return await open_sse_subscriber(target, recorder, handshake_seconds)
    loop = asyncio.get_running_loop()
    _, ws = await asyncio.wait_for(
        loop.create_connection(
            lambda: WebSocketClient(target.host, target.port, target.ws_path, TRANSPORT_WS),
            target.host,
            target.port,
        ),
        handshake_seconds,
    )
    try:
        async with asyncio.timeout(handshake_seconds):
            await ws.open
            params = {"authorization": f"Bearer {token}"} if token else {}
            ws.send_text(json.dumps({"type": "connection_init", "payload": params}))
            for _ in range(10):
                message = json.loads(await ws.next_text())
                if message.get("type") == "connection_ack":
                    break
                if message.get("type") == "ping":
                    ws.send_text('{"type":"pong"}')
                    continue
                raise ConnectionError(f"expected connection_ack, got {message}")
            else:
                raise ConnectionError("no connection_ack")
            if query is not None:
                frame = {"id": "1", "type": "subscribe", "payload": {"query": query}}
                ws.send_text(json.dumps(frame))
    except BaseException:
        ws.abort()
        raise
    subscriber = Subscriber(conn=ws)
    ws.on_text = lambda raw: recorder.frame(subscriber, raw, time.time_ns())
    ws.on_close = lambda: _on_close(subscriber, recorder)
    return subscriber


async def open_sse_subscriber(
    target: Target, recorder: Recorder, handshake_seconds: float
) -> Subscriber:
    """``GET /graphql/stream?query=...`` (anonymous) until the event stream's headers
    arrived; events then go straight to the recorder. The stream is open, not yet
    proven subscribed: the warm-up does that, as for WebSockets."""
    loop = asyncio.get_running_loop()
    path = target.sse_target(SUBSCRIPTION)
    _, stream = await asyncio.wait_for(
        loop.create_connection(
            lambda: SSEClient(target.host, target.port, path), target.host, target.port
        ),
        handshake_seconds,
    )
    subscriber = Subscriber(conn=stream)
    stream.on_event = lambda name, data, event_id: recorder.sse_event(
        subscriber, name, data, event_id, time.time_ns()
    )
    try:
        async with asyncio.timeout(handshake_seconds):
            await stream.open
        if stream.closed.done():
            raise ConnectionError(f"stream closed at once: {stream.close_reason}")
    except BaseException:
        stream.abort()
        raise
    stream.on_close = lambda: _on_close(subscriber, recorder)
    return subscriber


async def open_subscribers(
    target: Target,
    recorder: Recorder,
    count: int,
    concurrency: int,
    handshake_seconds: float = 30.0,
    cap_seconds: float = 600.0,
    tokens: Sequence[str | None] = (),
    query: str | None = SUBSCRIPTION,
    queries: Sequence[str | None] = (),
) -> tuple[list[Subscriber], collections.Counter[str]]:
    """Open up to ``count`` subscribers, ``concurrency`` handshakes at a time; the
    ``i``-th signed in with ``tokens[i]`` when tokens are given (else anonymous), and
    subscribed to ``queries[i]`` when queries are given (else to ``query``)."""
    gate = asyncio.Semaphore(concurrency)
    failures: collections.Counter[str] = collections.Counter()

    async def one(token: str | None, document: str | None) -> Subscriber | None:
        async with gate:
            try:
                return await open_subscriber(target, recorder, handshake_seconds, token, document)
            except Exception as error:
                failures[f"{type(error).__name__}: {str(error)[:120]}"] += 1
                return None

    chosen = [
        (tokens[i] if tokens else None, queries[i] if queries else query) for i in range(count)
    ]
    tasks = [asyncio.create_task(one(token, document)) for token, document in chosen]
    done, pending = await asyncio.wait(tasks, timeout=cap_seconds)
    for task in pending:
        task.cancel()
    if pending:
        failures["not opened within the opening cap"] += len(pending)
        await asyncio.wait(pending, timeout=10)
    opened = [s for task in done if not task.cancelled() and (s := task.result()) is not None]
    return opened, failures


async def close_subscribers(subscribers: list[Subscriber]) -> None:
    """Drop every connection at once (the server is stopped right after)."""
    for subscriber in subscribers:
        subscriber.conn.abort()
    await asyncio.sleep(0)


# Phases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhasePlan:
    """What to publish: ``events`` one after another (at ``rate`` per second when
    given, else back to back), or ``mutations`` with ``concurrency`` in flight."""

    name: str
    count: int
    mode: Literal["events", "mutations"] = "events"
    rate: float | None = None
    concurrency: int = 1


@dataclass
class PhaseResult:
    """What one phase measured (times in ms unless named otherwise)."""

    name: str
    mode: str
    subscribers: int
    published: int
    publish_errors: int
    expected: int
    delivered: int
    unacked_deliveries: int  # deliveries of events whose publish request failed or timed out
    duplicates: int
    stale: int
    drain_end: str  # complete | stall | cap
    publish_seconds: float
    fanout_seconds: float | None  # first publish sent -> last delivery received
    server_cpu_seconds: float | None
    cpu_us_per_delivery: float | None
    client_cpu_seconds: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    request_p50_ms: float | None
    request_p99_ms: float | None
    event_complete_p50_ms: float | None  # per event: send -> its last delivery
    event_complete_max_ms: float | None
    rss_kib_after: int | None
    errors: dict[str, int] = field(default_factory=dict)
    publish_error_samples: list[str] = field(default_factory=list)
    # Notification watchers (scenario g): each event mentions every one of them.
    watchers: int = 0
    notes_expected: int = 0
    notes_delivered: int = 0
    notes_duplicates: int = 0
    notes_latency_p50_ms: float | None = None
    notes_latency_p99_ms: float | None = None
    notes_latency_max_ms: float | None = None
    watchers_complete: int = 0  # watchers that got every published event's notification

    @property
    def delivered_pct(self) -> float | None:
        return 100.0 * self.delivered / self.expected if self.expected else None

    @property
    def notes_delivered_pct(self) -> float | None:
        return 100.0 * self.notes_delivered / self.notes_expected if self.notes_expected else None


@dataclass
class SessionResult:
    """One server process, N subscribers, and the phases run against it."""

    server: str
    subscribers_wanted: int
    subscribers_opened: int
    open_failures: dict[str, int]
    open_seconds: float
    warm_subscribers: int
    rss_kib_idle: int | None
    rss_kib_open: int | None
    rss_kib_peak: int | None
    phases: list[PhaseResult]
    closed_by_server: dict[str, int]
    note: str = ""
    watchers_wanted: int = 0  # signed-in ``notifications`` subscribers (scenario g)
    watchers_opened: int = 0

    @property
    def kib_per_subscription(self) -> float | None:
        if self.rss_kib_idle is None or self.rss_kib_open is None or not self.subscribers_opened:
            return None
        return (self.rss_kib_open - self.rss_kib_idle) / self.subscribers_opened


@dataclass(frozen=True)
class Limits:
    """Timeouts and caps (seconds) bounding every wait of a session."""

    open_concurrency: int = 50
    handshake_timeout: float = 30.0
    open_cap: float = 900.0
    request_timeout: float = 120.0
    warm_cap: float = 180.0
    warm_events: int = 3
    publish_cap_seconds: float = 300.0
    stall_seconds: float = 30.0
    drain_cap_seconds: float = 300.0


async def _drain(recorder: Recorder, limits: Limits) -> str:
    """Wait for the expected deliveries (notifications too); 'complete', 'stall' or
    'cap'."""
    deadline = time.monotonic() + limits.drain_cap_seconds
    seen, changed = recorder.all_received, time.monotonic()
    while not recorder.complete:
        now = time.monotonic()
        if now >= deadline:
            return "cap"
        if now - changed >= limits.stall_seconds:
            return "stall"
        await asyncio.sleep(0.05)
        if recorder.all_received != seen:
            seen, changed = recorder.all_received, time.monotonic()
    return "complete"


def _status(phase: str, seq: int) -> str:
    return f"bench:{phase}:{seq}:{time.time_ns()}"


def _ms(values_ns: list[int]) -> tuple[float | None, float | None, float | None]:
    ordered = sorted(v / 1e6 for v in values_ns)
    return percentile(ordered, 0.50), percentile(ordered, 0.99), (ordered[-1] if ordered else None)


async def warm_up(
    target: Target,
    recorder: Recorder,
    subscribers: list[Subscriber],
    limits: Limits,
    watchers: Sequence[Subscriber] = (),
) -> int:
    """Publish warm-up events until every subscription (the watchers' too) received
    one; how many did.

    graphql-transport-ws has no "subscribed" acknowledgement, so this is how the
    benchmark knows every subscription is live before it measures anything. At most
    ``limits.warm_events`` events, each waited for until it reached everyone or
    stopped making progress for 3 s, all within ``limits.warm_cap``.
    """
    everyone = [*subscribers, *watchers]
    if not everyone:
        return 0
    publisher = Publisher(target, limits.request_timeout)
    recorder.start("warm", len(subscribers), len(watchers))
    deadline = time.monotonic() + limits.warm_cap
    try:
        for seq in range(limits.warm_events):
            if time.monotonic() >= deadline:
                break
            with contextlib.suppress(PublishError, OSError, TimeoutError):
                await publisher.publish(_status("warm", seq))
                recorder.acked.add(seq)
            seen, changed = recorder.all_received, time.monotonic()
            while not recorder.complete and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                if recorder.all_received != seen:
                    seen, changed = recorder.all_received, time.monotonic()
                elif time.monotonic() - changed > 3:
                    break
            if all(s.warm for s in everyone):
                break
            await asyncio.sleep(0.5)
    finally:
        await publisher.close()
    return sum(s.warm for s in everyone)


async def run_phase(
    target: Target,
    recorder: Recorder,
    subscribers: list[Subscriber],
    plan: PhasePlan,
    server_pid: int | None,
    limits: Limits,
    watchers: Sequence[Subscriber] = (),
) -> PhaseResult:
    """Publish the phase's events (within the publish cap), drain, and measure; the
    notification ``watchers`` expect each event too."""
    if plan.mode == "mutations":
        with _burst_process() as pool:
            return await _run_phase(
                target, recorder, subscribers, plan, server_pid, limits, pool, watchers
            )
    return await _run_phase(target, recorder, subscribers, plan, server_pid, limits, None, watchers)


@contextlib.contextmanager
def _burst_process() -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """A fresh process for a mutation burst, already started and imported."""
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    )
    try:
        pool.submit(time.time).result(timeout=60)
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class BurstResult:
    """What a mutation burst's own process measured."""

    request_ns: list[int]
    acked: set[int]
    errors: collections.Counter[str]


def mutation_burst(target: Target, plan: PhasePlan, timeout: float, cap: float) -> BurstResult:
    """Send ``plan.count`` mutations, ``plan.concurrency`` in flight (in a child process)."""
    result = BurstResult([], set(), collections.Counter())
    deadline = time.monotonic() + max(1.0, cap)

    async def burst() -> None:
        sequence = iter(range(plan.count))

        async def worker() -> None:
            publisher = Publisher(target, timeout)
            try:
                for seq in sequence:
                    if time.monotonic() >= deadline:
                        break
                    begin = time.perf_counter_ns()
                    try:
                        await publisher.publish(_status(plan.name, seq))
                    except (PublishError, OSError, TimeoutError, ValueError) as error:
                        result.errors[f"{type(error).__name__}: {str(error)[:200]}"] += 1
                        continue
                    result.request_ns.append(time.perf_counter_ns() - begin)
                    result.acked.add(seq)
            finally:
                await publisher.close()

        await asyncio.gather(*(worker() for _ in range(plan.concurrency)))

    asyncio.run(burst())
    return result


async def _run_phase(
    target: Target,
    recorder: Recorder,
    subscribers: list[Subscriber],
    plan: PhasePlan,
    server_pid: int | None,
    limits: Limits,
    burst_pool: concurrent.futures.ProcessPoolExecutor | None,
    watchers: Sequence[Subscriber],
) -> PhaseResult:
    recorder.start(plan.name, len(subscribers), len(watchers))
    request_ns: list[int] = []
    publish_errors: collections.Counter[str] = collections.Counter()
    cpu_before = process_cpu_seconds(server_pid) if server_pid else None
    client_before = client_cpu_seconds()
    started = time.monotonic()
    publish_deadline = started + limits.publish_cap_seconds
    recorder.first_send_ns = time.time_ns()

    async def publish_one(publisher: Publisher, seq: int) -> None:
        begin = time.perf_counter_ns()
        try:
            await publisher.publish(_status(plan.name, seq))
        except (PublishError, OSError, TimeoutError, ValueError) as error:
            publish_errors[f"{type(error).__name__}: {str(error)[:200]}"] += 1
            return
        request_ns.append(time.perf_counter_ns() - begin)
        recorder.acked.add(seq)

    if plan.mode == "events" and plan.rate:
        # Open loop: each event is sent at its time, whether or not the previous
        # request has been answered (up to RATE_CONNECTIONS requests in flight).
        idle: list[Publisher] = []
        gate = asyncio.Semaphore(RATE_CONNECTIONS)

        async def scheduled(seq: int) -> None:
            async with gate:
                publisher = idle.pop() if idle else Publisher(target, limits.request_timeout)
                try:
                    await publish_one(publisher, seq)
                finally:
                    idle.append(publisher)

        sends: list[asyncio.Task[None]] = []
        for seq in range(plan.count):
            await asyncio.sleep(max(0.0, started + seq / plan.rate - time.monotonic()))
            sends.append(asyncio.create_task(scheduled(seq)))
        remaining = max(1.0, publish_deadline - time.monotonic())
        _, late = await asyncio.wait(sends, timeout=remaining)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=10)
        for publisher in idle:
            await publisher.close()
    elif plan.mode == "events":
        publisher = Publisher(target, limits.request_timeout)
        try:
            for seq in range(plan.count):
                if time.monotonic() >= publish_deadline:
                    break
                await publish_one(publisher, seq)
        finally:
            await publisher.close()
    else:
        # The burst runs in its own process (started before the clock), so a request's
        # latency is the server's and not this loop's, busy reading the subscribers.
        burst = await asyncio.get_running_loop().run_in_executor(
            burst_pool,
            mutation_burst,
            target,
            plan,
            limits.request_timeout,
            publish_deadline - time.monotonic(),
        )
        request_ns.extend(burst.request_ns)
        recorder.acked.update(burst.acked)
        publish_errors.update(burst.errors)
    unsent = plan.count - len(recorder.acked) - sum(publish_errors.values())
    completion = recorder.event_completion_ms()
    if unsent > 0:
        publish_errors[
            f"not sent or not answered within the {limits.publish_cap_seconds:g}s publish cap"
        ] += unsent
    publish_seconds = time.monotonic() - started
    drain_end = await _drain(recorder, limits)
    cpu = (
        process_cpu_seconds(server_pid) - cpu_before
        if server_pid and cpu_before is not None
        else None
    )
    p50, p99, worst = _ms(recorder.latencies_ns)
    notes_p50, notes_p99, notes_worst = _ms(recorder.notes.latencies_ns)
    request_p50, request_p99, _ = _ms(request_ns)
    fanout = (
        (recorder.last_receive_ns - recorder.first_send_ns) / 1e9
        if recorder.last_receive_ns
        else None
    )
    return PhaseResult(
        name=plan.name,
        mode=plan.mode if not plan.rate else f"events @{plan.rate:g}/s",
        subscribers=len(subscribers),
        published=len(recorder.published),
        publish_errors=sum(publish_errors.values()),
        expected=recorder.expected,
        delivered=recorder.delivered,
        unacked_deliveries=recorder.unacked_deliveries,
        duplicates=recorder.duplicates,
        stale=recorder.stale,
        drain_end=drain_end,
        publish_seconds=publish_seconds,
        fanout_seconds=fanout,
        server_cpu_seconds=cpu,
        cpu_us_per_delivery=(
            cpu * 1e6 / recorder.received if cpu is not None and recorder.received else None
        ),
        client_cpu_seconds=client_cpu_seconds() - client_before,
        latency_p50_ms=p50,
        latency_p99_ms=p99,
        latency_max_ms=worst,
        request_p50_ms=request_p50,
        request_p99_ms=request_p99,
        event_complete_p50_ms=percentile(completion, 0.5),
        event_complete_max_ms=completion[-1] if completion else None,
        rss_kib_after=process_memory_kib(server_pid).get("VmRSS") if server_pid else None,
        errors=dict(recorder.errors),
        publish_error_samples=list(publish_errors)[:5],
        watchers=len(watchers),
        watchers_complete=sum(
            w.phase == plan.name and len(w.seen) >= len(recorder.published) for w in watchers
        ),
        notes_expected=recorder.notes_expected,
        notes_delivered=recorder.notes.received,
        notes_duplicates=recorder.notes.duplicates,
        notes_latency_p50_ms=notes_p50,
        notes_latency_p99_ms=notes_p99,
        notes_latency_max_ms=notes_worst,
    )


async def run_session(
    server: str,
    target: Target,
    subscribers: int,
    phases: list[PhasePlan],
    server_pid: int | None,
    limits: Limits,
    phases_before_opening: tuple[PhasePlan, ...] = (),
    before_closing: Callable[[], None] | None = None,
    watcher_tokens: Sequence[str] = (),
    watcher_own_shapes: bool = False,
) -> SessionResult:
    """Measure idle memory, run ``phases_before_opening``, open the subscribers (and a
    ``notifications`` watcher per token in ``watcher_tokens``: the target's status
    suffix must mention each of their users; all with the same document, or with
    ``watcher_own_shapes`` each its own named operation), warm them up, measure memory
    again, run ``phases``, and close everything."""
    raise_nofile_limit()
    recorder = Recorder()
    results: list[PhaseResult] = []

    def memory() -> dict[str, int]:
        return process_memory_kib(server_pid) if server_pid else {}

    for plan in phases_before_opening:
        results.append(await run_phase(target, recorder, [], plan, server_pid, limits))
    await asyncio.sleep(0.5)
    idle = memory().get("VmRSS")
    began = time.monotonic()
    opened, failures = await open_subscribers(
        target,
        recorder,
        subscribers,
        limits.open_concurrency,
        limits.handshake_timeout,
        limits.open_cap,
    )
    watchers: list[Subscriber] = []
    try:
        if watcher_tokens:
            watchers, watcher_failures = await open_subscribers(
                target,
                recorder,
                len(watcher_tokens),
                limits.open_concurrency,
                limits.handshake_timeout,
                limits.open_cap,
                tokens=watcher_tokens,
                query=NOTIFICATIONS,
                queries=(
                    [named_operation(NOTIFICATIONS, f"W{n}") for n in range(len(watcher_tokens))]
                    if watcher_own_shapes
                    else ()
                ),
            )
            failures.update({f"watcher: {why}": n for why, n in watcher_failures.items()})
        open_seconds = time.monotonic() - began
        warm = await warm_up(target, recorder, opened, limits, watchers)
        await asyncio.sleep(1.0)
        open_rss = memory().get("VmRSS")
        for plan in phases:
            results.append(
                await run_phase(target, recorder, opened, plan, server_pid, limits, watchers)
            )
        peak = memory().get("VmHWM")
    finally:
        if before_closing is not None:
            before_closing()
        recorder.closing = True
        await close_subscribers([*opened, *watchers])
    return SessionResult(
        server=server,
        subscribers_wanted=subscribers,
        subscribers_opened=len(opened),
        open_failures=dict(failures),
        open_seconds=open_seconds,
        warm_subscribers=warm,
        watchers_wanted=len(watcher_tokens),
        watchers_opened=len(watchers),
        rss_kib_idle=idle,
        rss_kib_open=open_rss,
        rss_kib_peak=peak,
        phases=results,
        closed_by_server=dict(recorder.closed),
    )


def session_as_dict(session: SessionResult) -> dict[str, Any]:
    """A JSON-ready view of a session, derived numbers included."""
    data = dataclasses.asdict(session)
    data["kib_per_subscription"] = session.kib_per_subscription
    for phase, result in zip(data["phases"], session.phases, strict=True):
        phase["delivered_pct"] = result.delivered_pct
        phase["notes_delivered_pct"] = result.notes_delivered_pct
    return data


# Command line ------------------------------------------------------------------------


def _phases(args: argparse.Namespace) -> Iterator[PhasePlan]:
    if args.events:
        yield PhasePlan("events", args.events, rate=args.rate)
    if args.mutations:
        yield PhasePlan("mutations", args.mutations, "mutations", concurrency=args.concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--publish", choices=["graphql", "post"], default="graphql")
    parser.add_argument("--token", help="bearer token for the createStatusChange mutation")
    parser.add_argument("--sign-up", metavar="USERNAME", help="create this Pulse user first")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--open-concurrency", type=int, default=50)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--rate", type=float, help="events per second (default: back to back)")
    parser.add_argument("--mutations", type=int, default=0, help="then a concurrent burst")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--server-pid", type=int, help="measure this process's CPU and RSS")
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    args = parser.parse_args()

    async def run() -> SessionResult:
        token = args.token
        if args.sign_up:
            token = await sign_up(args.host, args.port, args.sign_up)
        target = Target(args.host, args.port, args.publish, token)
        limits = Limits(open_concurrency=args.open_concurrency, stall_seconds=args.stall_seconds)
        return await run_session(
            "server", target, args.subscribers, list(_phases(args)), args.server_pid, limits
        )

    print(json.dumps(session_as_dict(asyncio.run(run())), indent=2))


if __name__ == "__main__":
    main()
