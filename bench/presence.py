"""Scenario (h): the Redis commands a Pulse server makes per connection opened and closed.

With ``online`` users (K) holding one authenticated WebSocket each throughout, the
session runs ``cycles`` presence cycles: open a WebSocket, ``connection_init`` with a
bearer token, ``connection_ack``, close (``bench/churn.py`` with ``subscribe=False``).
Each cycle's user is one of a pool of its own that nobody else holds a socket of, so
every cycle's open is its user's first connection in the process and every close its
last one: the two moments presence writes to Redis (``users/presence.py``).

Meanwhile a ``MONITOR`` connection records every command the bench's redis-server
runs, between two ``ECHO`` markers sent by the bench: who sent it (a client
connection, i.e. the server under test: one command each, one round trip unless
pipelined; or ``lua``, a command run inside a script, attributed to the script whose
``EVALSHA`` it follows: a script runs atomically, its commands right after its
``EVALSHA`` line) and what (``EVALSHA`` named by its presence script, ``PUBLISH`` by
its channel). ``INFO stats commandstats`` read
at both markers gives the same per-command calls (scripts' commands included) as a
cross-check. The window also contains what runs by the clock (the presence
refresher's ``MAINTAIN``, every third of the presence timeout), reported apart.

Accounts come from ``bench/accounts.py`` (written to the database, one password hash
for all), so K = 1,000 costs seconds, not the minutes 2,000 password hashes would.
The redis-server is emptied (``FLUSHALL``) before each session's server starts, so
no earlier session's presence (expiring, then swept) falls into the window.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.churn import ChurnPlan, ChurnResult, run_churn
from bench.loadgen import Limits, Recorder, Target, close_subscribers, open_subscribers

ROOT = Path(__file__).resolve().parents[1]
ONLINE_KEY = "pulse:presence:online"  # users.presence.ONLINE_KEY
SERVER, SCRIPT = "server", "script"  # who sent a command: a client connection, or Lua


@dataclass(frozen=True)
class PresencePlan:
    """K users online, then ``cycles`` cycles, ``concurrency`` in flight, over a pool
    of ``pool_per_slot`` users per slot."""

    name: str
    online: int
    cycles: int
    concurrency: int = 1
    pool_per_slot: int = 10
    cycle_timeout: float = 30.0
    cap_seconds: float = 300.0
    settle_seconds: float = 1.0  # after the last cycle, so presence writes the last close


@dataclass
class CommandCount:
    """One kind of command in the window: who sent it, what, how many times."""

    source: str  # SERVER (a client connection) or SCRIPT (run inside EVALSHA/EVAL)
    command: str  # upper case; EVALSHA with its script's name, PUBLISH with its channel
    calls: int
    script: str = ""  # SCRIPT: the EVALSHA (or EVAL) that ran it, e.g. "EVALSHA APPLY"


@dataclass
class PresenceResult:
    """What scenario (h) measured for one K."""

    name: str
    online: int
    online_opened: int
    pool: int
    open_failures: dict[str, int]
    seed_seconds: float
    online_seconds: float  # opening the K sockets until Redis had them online
    online_in_redis: int | None  # ZCARD of the online set when the window began
    churn: ChurnResult | None = None
    window_seconds: float = 0.0
    commands: list[CommandCount] = field(default_factory=list)
    commandstats: dict[str, int] = field(default_factory=dict)  # INFO calls, window diff
    total_commands_processed: int | None = None  # INFO stats, window diff
    monitor_lines: int = 0
    closed_by_server: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def calls(self, source: str | None = None, prefix: str = "", script: str | None = None) -> int:
        return sum(
            c.calls
            for c in self.commands
            if (source is None or c.source == source)
            and c.command.startswith(prefix)
            and (script is None or c.script == script)
        )

    def per_cycle(self, calls: int) -> float | None:
        ok = self.churn.cycles_ok if self.churn else 0
        return calls / ok if ok else None


# A small RESP client -------------------------------------------------------------------


class RedisConnection:
    """One plain connection to Redis: commands, replies, and ``MONITOR`` lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        host, port = writer.get_extra_info("sockname")[:2]
        self.address = f"{host}:{port}"  # as MONITOR names this connection

    @classmethod
    async def open(cls, url: str) -> RedisConnection:
        parts = urllib.parse.urlsplit(url)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 6379), 10
        )
        return cls(reader, writer)

    async def command(self, *args: str | int) -> Any:
        encoded = [str(arg).encode() for arg in args]
        frame = b"*%d\r\n" % len(encoded) + b"".join(
            b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in encoded
        )
        self.writer.write(frame)
        await self.writer.drain()
        return await asyncio.wait_for(self._reply(), 30)

    async def _reply(self) -> Any:
        line = (await self.reader.readline()).rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(f"redis: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else (await self.reader.readexactly(size + 2))[:-2].decode()
        if kind == b"*":
            return [await self._reply() for _ in range(max(0, int(rest)))]
        raise RuntimeError(f"redis: unexpected reply {line[:100]!r}")

    async def line(self) -> str:
        return (await self.reader.readline()).decode(errors="replace").rstrip("\r\n")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2)


async def flush_redis(url: str) -> None:
    """Empty the bench's redis-server (before a session's server starts)."""
    connection = await RedisConnection.open(url)
    try:
        await connection.command("FLUSHALL")
    finally:
        await connection.close()


def _info(text: str) -> tuple[dict[str, int], int | None]:
    """``INFO``'s per-command calls and ``total_commands_processed``."""
    calls: dict[str, int] = {}
    total = None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.startswith("cmdstat_"):
            stats = dict(item.split("=", 1) for item in value.split(","))
            calls[name.removeprefix("cmdstat_").upper()] = int(stats["calls"])
        elif name == "total_commands_processed":
            total = int(value)
    return calls, total


SCRIPT_COMMANDS = {"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"}
MONITOR_LINE = re.compile(r"^\+\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$")
ARGUMENT = re.compile(r'"((?:[^"\\]|\\.)*)"')


def script_names() -> dict[str, str]:
    """EVALSHA digests of the presence scripts, by name (read from ``users/presence.py``
    without importing it, which needs Django's settings; empty when they cannot be
    read: EVALSHA is then named by digest)."""
    path = Path(__file__).resolve().parents[1] / "users" / "presence.py"
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return {}
    texts: dict[str, str] = {}  # the module's string constants, built with + too

    def text(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return texts.get(node.id)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = text(node.left), text(node.right)
            return None if left is None or right is None else left + right
        return None

    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], text(node.value)
            if isinstance(target, ast.Name) and value is not None:
                texts[target.id] = value
    found = {}
    for name in ("APPLY", "MAINTAIN", "ONLINE_USERS"):
        if (source := texts.get(f"{name}_LUA")) is not None:
            found[hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()] = name
    return found


class Monitor:
    """Every command Redis runs, between two markers of the bench's own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lines: list[str] = []
        self.marker = f"bench-h-{uuid.uuid4().hex}"
        self._monitor: RedisConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self.control: RedisConnection | None = None
        self.before: tuple[dict[str, int], int | None] = ({}, None)
        self.after: tuple[dict[str, int], int | None] = ({}, None)

    async def start(self) -> None:
        self._monitor = await RedisConnection.open(self.url)
        if await self._monitor.command("MONITOR") != "OK":
            raise RuntimeError("MONITOR refused")
        self._reader = asyncio.create_task(self._read(self._monitor))
        self.control = await RedisConnection.open(self.url)
        self.before = _info(await self.control.command("INFO", "stats", "commandstats"))
        await self.control.command("ECHO", f"{self.marker}-start")

    async def _read(self, monitor: RedisConnection) -> None:
        end = f'"{self.marker}-end"'
        for _ in range(10_000_000):  # bounded: far more than a window ever holds
            line = await monitor.line()
            if not line:
                return
            self.lines.append(line)
            if line.endswith(end):
                return

    async def stop(self) -> None:
        assert self.control is not None and self._reader is not None
        await self.control.command("ECHO", f"{self.marker}-end")
        self.after = _info(await self.control.command("INFO", "stats", "commandstats"))
        try:
            await asyncio.wait_for(self._reader, 30)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        for connection in (self._monitor, self.control):
            if connection is not None:
                await connection.close()

    def counts(self) -> list[CommandCount]:
        """The window's commands by source and kind, the bench's own left out."""
        assert self.control is not None
        names = script_names()
        inside = False
        script = ""  # the last script a client ran: the one running the lua lines
        found: Counter[tuple[str, str, str]] = Counter()
        for line in self.lines:
            match = MONITOR_LINE.match(line)
            if match is None:
                continue
            client, args = match[1], ARGUMENT.findall(match[2])
            if client == self.control.address:
                if args[-1:] == [f"{self.marker}-start"]:
                    inside = True
                elif args[-1:] == [f"{self.marker}-end"]:
                    break
                continue
            if not inside or not args:
                continue
            label = _label(args, names)
            if client == "lua":
                found[(SCRIPT, label, script)] += 1
                continue
            if label.split(" ", 1)[0] in SCRIPT_COMMANDS:
                script = label
            found[(SERVER, label, "")] += 1
        return [
            CommandCount(source, command, calls, script)
            for (source, command, script), calls in sorted(found.items(), key=lambda kv: -kv[1])
        ]


def _label(args: list[str], names: dict[str, str]) -> str:
    command = args[0].upper()
    if command in {"EVALSHA", "EVALSHA_RO"} and len(args) > 1:
        return f"{command} {names.get(args[1], args[1][:8])}"
    if command in {"PUBLISH", "SPUBLISH"} and len(args) > 1:
        return f"{command} {args[1]}"
    return command


# The session ---------------------------------------------------------------------------


def seed_accounts(env: dict[str, str], prefix: str, count: int) -> list[str]:
    """``count`` new accounts' tokens, from ``bench/accounts.py`` in the server's env."""
    with tempfile.TemporaryDirectory(prefix="pulse-bench-accounts.") as folder:
        output = Path(folder) / "tokens.json"
        subprocess.run(
            [sys.executable, "-m", "bench.accounts", prefix, str(count), str(output)],
            cwd=ROOT,
            env={**env, "LOG_LEVEL": "WARNING"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=600,
        )
        tokens: list[str] = json.loads(output.read_text())
    if len(tokens) != count:
        raise RuntimeError(f"bench.accounts wrote {len(tokens)} tokens, not {count}")
    return tokens


async def _online_count(url: str) -> int:
    connection = await RedisConnection.open(url)
    try:
        return int(await connection.command("ZCARD", ONLINE_KEY))
    finally:
        await connection.close()


async def run_presence(
    target: Target,
    server_pid: int | None,
    env: dict[str, str],
    redis_url: str,
    plan: PresencePlan,
    limits: Limits,
    before_closing: Callable[[], None] | None = None,
) -> PresenceResult:
    """Seed the accounts, bring K users online, count the window's Redis commands."""
    pool = plan.concurrency * plan.pool_per_slot
    began = time.monotonic()
    tokens = await asyncio.to_thread(seed_accounts, env, f"{plan.name}u", plan.online + pool)
    holder_tokens: Sequence[str] = tokens[: plan.online]
    pool_tokens = tuple(tokens[plan.online :])
    result = PresenceResult(
        name=plan.name,
        online=plan.online,
        online_opened=0,
        pool=pool,
        open_failures={},
        seed_seconds=time.monotonic() - began,
        online_seconds=0.0,
        online_in_redis=None,
    )
    recorder = Recorder()  # the holders' frames: keep-alive pings only
    already = await _online_count(redis_url)  # the publisher, signed in by ``serve``
    began = time.monotonic()
    holders, failures = await open_subscribers(
        target,
        recorder,
        plan.online,
        limits.open_concurrency,
        limits.handshake_timeout,
        limits.open_cap,
        tokens=holder_tokens,
        query=None,
    )
    result.online_opened, result.open_failures = len(holders), dict(failures)
    try:
        # The worker writes the holders' members in batches: wait until Redis has them.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            result.online_in_redis = await _online_count(redis_url)
            if result.online_in_redis >= already + len(holders):
                break
            await asyncio.sleep(0.2)
        result.online_seconds = time.monotonic() - began
        await asyncio.sleep(1.0)
        churn = ChurnPlan(
            plan.name,
            plan.cycles,
            plan.concurrency,
            0,
            "ws",
            cycle_timeout=plan.cycle_timeout,
            cap_seconds=plan.cap_seconds,
            settle_seconds=plan.settle_seconds,
            tokens=pool_tokens,
            subscribe=False,
        )
        monitor = Monitor(redis_url)
        try:
            await monitor.start()
            window = time.monotonic()
            result.churn = await run_churn(target, churn, server_pid)
            await monitor.stop()
            result.window_seconds = time.monotonic() - window
        finally:
            await monitor.close()
        result.monitor_lines = len(monitor.lines)
        result.commands = monitor.counts()
        (before, total_before), (after, total_after) = monitor.before, monitor.after
        own = {"INFO", "ECHO", "MONITOR"}
        result.commandstats = {
            name: calls - before.get(name, 0)
            for name, calls in sorted(after.items())
            if name not in own and calls - before.get(name, 0)
        }
        if total_before is not None and total_after is not None:
            # The bench's own: the first INFO and the two ECHO markers.
            result.total_commands_processed = total_after - total_before - 3
    finally:
        if before_closing is not None:
            before_closing()
        recorder.closing = True
        await close_subscribers(holders)
    result.closed_by_server = dict(recorder.closed)
    result.errors = dict(recorder.errors)
    return result
