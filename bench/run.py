"""Run the whole fan-out benchmark matrix with one command and print a Markdown table.

    .venv/bin/python -m bench.run                 # the full matrix (1,000 and 10,000)
    .venv/bin/python -m bench.run --quick         # a smoke run for CI (about 4 min)
    .venv/bin/python -m bench.run --servers bare,pulse-redis --scenarios a,e
    .venv/bin/python -m bench.run --servers pulse-redis,pulse-redis-sse --scenarios a,b,f
    .venv/bin/python -m bench.run --servers pulse-redis --scenarios a,g,h
    .venv/bin/python -m bench.run --scenarios w   # the cost of a write: stock and Pulse,
                                                  # SQLite and PostgreSQL, Redis or not

Every server (and one redis-server) is started by this command on a free loopback
port, in its own process group, with its output in a log file under a temporary
directory; each session gets a fresh server process, and everything is stopped in
``finally`` blocks, on failure and on Ctrl-C too. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, cast

from bench.churn import ChurnPlan, ChurnResult, run_churn
from bench.loadgen import (
    Limits,
    PhasePlan,
    PhaseResult,
    PublishMode,
    SessionResult,
    Target,
    Transport,
    raise_nofile_limit,
    run_session,
    session_as_dict,
    sign_up,
)
from bench.presence import (
    SCRIPT,
    SERVER,
    PresencePlan,
    PresenceResult,
    flush_redis,
    run_presence,
)
from bench.writes import (
    COMMANDS,
    DATABASES,
    App,
    Command,
    Database,
    WritePlan,
    WriteResult,
    WriteServer,
    find_postmaster,
    run_writes,
    stored_rows,
    write_servers,
)

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
PULSE_SECRET_KEY = "pulse-bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"  # noqa: S105
NOFILE = 65536


# Processes ---------------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _child_setup() -> None:
    """In the child, before exec: enough file descriptors for 10,000 sockets."""
    raise_nofile_limit(NOFILE)


class ManagedProcess:
    """A child process in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.args, self.env, self.log_path = name, args, env, log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
                preexec_fn=_child_setup,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM the process group, then SIGKILL it after ``grace`` seconds."""
        process, self.process = self.process, None
        if process is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            return process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return process.wait(10)
        finally:
            with contextlib.suppress(ProcessLookupError):  # stragglers of the group
                os.killpg(process.pid, signal.SIGKILL)


def wait_until(check: Callable[[], bool], timeout: float, what: str, alive: ManagedProcess) -> None:
    """Poll ``check`` until it holds; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive.running():
            raise RuntimeError(f"{what} exited early; see {alive.log_path}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up within {timeout}s; see {alive.log_path}")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
        return bool(response.status == 200)


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    args = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
    args += ["--dir", str(workdir), "--maxclients", "1000"]
    redis = ManagedProcess("redis", args, dict(os.environ), workdir / "redis.log")
    redis.start()
    try:

        def pings() -> bool:
            with socket.create_connection((LOOPBACK, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        wait_until(pings, 15, "redis-server", redis)
        yield f"redis://{LOOPBACK}:{port}/0"
    finally:
        redis.stop(5)


# Servers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerKind:
    """One column of the matrix: which app, and which channel layer."""

    key: str
    label: str
    app: Literal["bare", "stock", "pulse"]
    redis: bool
    transport: Transport = "ws"  # how the subscribers connect: WebSocket, or SSE


SERVERS = [
    ServerKind("bare", "bare ASGI (ceiling)", "bare", False),
    ServerKind("stock-memory", "stock strawberry+Channels, in-memory layer", "stock", False),
    ServerKind("stock-redis", "stock strawberry+Channels, redis pubsub", "stock", True),
    ServerKind("pulse-redis", "Pulse, WebSocket, redis pubsub, SQLite", "pulse", True),
    ServerKind("pulse-memory", "Pulse, WebSocket, in-memory layer, SQLite", "pulse", False),
    ServerKind("pulse-redis-sse", "Pulse, SSE, redis pubsub, SQLite", "pulse", True, "sse"),
    ServerKind("pulse-memory-sse", "Pulse, SSE, in-memory layer, SQLite", "pulse", False, "sse"),
]
SCENARIOS = "abcdefghw"
STATUS_MAX = 280  # Pulse's longest status: (g)'s tag plus the watchers' mentions must fit
TAG_MAX = 40  # bench:<phase>:<seq>:<19-digit ns>, with room to spare
QUICK_SERVERS = [k.key for k in SERVERS if k.key != "pulse-memory-sse"]
ASGI_APPS = {"bare": "bench.bare_app:application", "stock": "bench.stock_app:application"}


@dataclass
class RunningServer:
    kind: ServerKind
    process: ManagedProcess
    target: Target
    exit_status: int | None = None


def _base_env() -> dict[str, str]:
    dropped = {"REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DEBUG"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def serve(
    kind: ServerKind,
    workdir: Path,
    redis_url: str | None,
    tag: str,
    database_url: str | None = None,
    plain_daphne: bool = False,
) -> Iterator[RunningServer]:
    """Start a fresh server process of ``kind``; stop it (process group) on exit.

    Pulse runs on ``database_url`` (default: a fresh SQLite file), under
    ``python -m backend.server`` or with ``plain_daphne`` under ``python -m daphne``;
    the stock app stores its mutations in ``database_url`` when given (scenario w).
    """
    port = free_port()
    env = _base_env()
    if kind.redis:
        assert redis_url is not None
        env["REDIS_URL"] = redis_url
    log_path = workdir / f"{kind.key}-{tag}-{port}.log"
    python = sys.executable
    if kind.app == "stock" and database_url:
        env["STOCK_DATABASE_URL"] = database_url
    if kind.app == "pulse":
        database = workdir / f"pulse-{tag}-{port}.sqlite3"
        env |= {
            "DJANGO_SETTINGS_MODULE": "backend.settings",
            "SECRET_KEY": PULSE_SECRET_KEY,
            "DEBUG": "0",
            "DATABASE_URL": database_url or f"sqlite:///{database}",
        }
        with log_path.open("ab") as log:
            subprocess.run(
                [python, "manage.py", "migrate", "--noinput", "-v0"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=300,
            )
        runner = "daphne" if plain_daphne else "backend.server"
        args = [python, "-m", runner, "-b", LOOPBACK, "-p", str(port), "asgi:application"]
    else:
        args = [python, "-m", "daphne", "-b", LOOPBACK, "-p", str(port), ASGI_APPS[kind.app]]
    process = ManagedProcess(kind.key, args, env, log_path)
    server: RunningServer | None = None
    process.start()
    try:
        wait_until(lambda: http_ok(f"http://{LOOPBACK}:{port}/healthz"), 60, kind.key, process)
        if kind.app == "pulse":
            token = asyncio.run(sign_up(LOOPBACK, port, "bench"))
            target = Target(LOOPBACK, port, "graphql", token, transport=kind.transport)
        else:
            publish: PublishMode = "post" if kind.app == "bare" else "graphql"
            target = Target(LOOPBACK, port, publish, transport=kind.transport)
        server = RunningServer(kind, process, target)
        yield server
    finally:
        status = process.stop()
        if server is not None:
            server.exit_status = status


# Log checks --------------------------------------------------------------------------

SUSPICIOUS = re.compile(
    r"traceback|error|exception|critical|warning|failed|slow consumer|took too long", re.I
)
NOISE = re.compile(r'"(WSCONNECTING|WSCONNECT|WSDISCONNECT|GET|POST) ')
VOLATILE = re.compile(r"\d{4}-\d\d-\d\d[ T][\d:,.]+|\[\d+/\w+/\d+:[\d:]+\]|\d+\.\d+\.\d+\.\d+:\d+")


# (w): other processes' CPU during a burst, in cores, above which the row is flagged.
BUSY_MACHINE = 0.15

# The one start-up warning of Pulse under plain daphne (backend/server/plain_daphne.py).
PLAIN_DAPHNE = re.compile(r"Running under plain daphne: ")


def suspicious_lines(
    text: str, limit: int = 8, expected: re.Pattern[str] | None = None
) -> tuple[int, list[str]]:
    """How many log lines look like trouble (``expected`` ones aside), and the most
    frequent distinct ones."""
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if expected is not None and expected.search(line):
            continue
        if SUSPICIOUS.search(line) and not NOISE.search(line):
            found[VOLATILE.sub("…", line.strip())[:300]] += 1
    return sum(found.values()), [f"{n}x {line}" for line, n in found.most_common(limit)]


# The matrix --------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    small: int
    large: int
    events: int
    rate_events: int
    rate: float
    mutations: int
    mutation_concurrency: int
    churn_cycles: int
    churn_concurrency: int
    churn_replay: int
    scenarios: frozenset[str]
    servers: tuple[ServerKind, ...]
    limits: Limits
    watchers: int = 20
    watcher_shapes: tuple[str, ...] = ("shared", "own")
    presence_online: tuple[int, ...] = (10, 1000)
    presence_cycles: int = 1000
    presence_concurrency: int = 1
    write_mutations: int = 400
    write_warmup: int = 50
    write_concurrency: int = 20
    write_databases: tuple[Database, ...] = DATABASES
    write_commands: tuple[Command, ...] = COMMANDS

    @property
    def write_servers(self) -> list[WriteServer]:
        """Scenario (w)'s rows: the chosen stock and Pulse servers (WebSocket ones: (w)
        has no subscriber) on every chosen database, Pulse under every chosen command."""
        layers: dict[App, tuple[bool, ...]] = {"stock": (), "pulse": ()}
        for kind in self.servers:
            if kind.app in ("stock", "pulse") and kind.transport == "ws":
                app: App = "stock" if kind.app == "stock" else "pulse"
                layers[app] += (kind.redis,)
        return write_servers(layers, self.write_databases, self.write_commands)


@dataclass
class SessionRecord:
    """A session's result plus what its server's log said."""

    server: ServerKind
    session: str
    result: SessionResult | None
    churn: ChurnResult | None = None  # scenario (f) instead of ``result``
    presence: PresenceResult | None = None  # scenario (h) instead of ``result``
    error: str | None = None
    log_path: str = ""
    log_issues_during_run: tuple[int, list[str]] = (0, [])
    log_issues_at_shutdown: tuple[int, list[str]] = (0, [])
    exit_status: int | None = None


@dataclass
class WriteRecord:
    """A (w) session: one server on a fresh database, and what its log said."""

    server: WriteServer
    result: WriteResult | None = None
    error: str | None = None
    log_path: str = ""
    log_issues_during_run: tuple[int, list[str]] = (0, [])
    log_issues_at_shutdown: tuple[int, list[str]] = (0, [])
    exit_status: int | None = None


@dataclass
class Matrix:
    records: list[SessionRecord] = field(default_factory=list)
    writes: list[WriteRecord] = field(default_factory=list)
    postgres_skipped: str | None = None  # why (w) has no PostgreSQL rows

    def ran(self, server: str, sessions: str) -> bool:
        """Whether ``server`` had any of the one-letter ``sessions`` (failed ones too)."""
        return any(r.server.key == server and r.session in tuple(sessions) for r in self.records)

    def write(self, server: WriteServer) -> WriteResult | None:
        for record in self.writes:
            if record.server == server:
                return record.result
        return None

    def phase(self, server: str, name: str) -> tuple[SessionResult, PhaseResult] | None:
        for record in self.records:
            if record.server.key != server or record.result is None:
                continue
            for phase in record.result.phases:
                if phase.name == name:
                    return record.result, phase
        return None

    def session(self, server: str, session: str) -> SessionResult | None:
        for record in self.records:
            if record.server.key == server and record.session == session:
                return record.result
        return None

    def churn(self, server: str) -> ChurnResult | None:
        for record in self.records:
            if record.server.key == server and record.churn is not None:
                return record.churn
        return None

    def presence(self, server: str) -> list[PresenceResult]:
        return [
            record.presence
            for record in self.records
            if record.server.key == server and record.presence is not None
        ]


@dataclass(frozen=True)
class SessionPlan:
    """One session: a fresh server, subscribers (and ``watchers``: signed-in users
    subscribed to their notifications, mentioned by every event) and phases, or a
    churn run, or a presence run."""

    name: str
    subscribers: int
    phases: list[PhasePlan]
    before: tuple[PhasePlan, ...] = ()
    churn: ChurnPlan | None = None
    watchers: int = 0
    watcher_own_shapes: bool = False
    presence: PresencePlan | None = None


def sessions_for(kind: ServerKind, config: Config) -> Iterator[SessionPlan]:
    """The sessions of one server, in order."""
    pulse_ws = kind.app == "pulse" and kind.transport == "ws"
    if "a" in config.scenarios or "d" in config.scenarios:
        yield SessionPlan("a", config.small, [PhasePlan("a", config.events)])
    if "g" in config.scenarios and pulse_ws:  # right after (a): the same, plus watchers
        for shapes in config.watcher_shapes:
            name = "g" if shapes == "shared" else "g_own"
            yield SessionPlan(
                name,
                config.small,
                [PhasePlan(name, config.events)],
                watchers=config.watchers,
                watcher_own_shapes=shapes == "own",
            )
    if "c" in config.scenarios:
        yield SessionPlan("c", config.large, [PhasePlan("c", config.rate_events, rate=config.rate)])
    if "b" in config.scenarios or "d" in config.scenarios:
        yield SessionPlan("b", config.large, [PhasePlan("b", config.events)])
    if "e" in config.scenarios and kind.app == "pulse":
        burst = PhasePlan(
            "e0", config.mutations, "mutations", concurrency=config.mutation_concurrency
        )
        yield SessionPlan("e", config.small, [replace(burst, name="e1")], (burst,))
    if "f" in config.scenarios:
        churn = ChurnPlan(
            "f",
            config.churn_cycles,
            config.churn_concurrency,
            config.churn_replay if kind.app == "pulse" else 0,  # only Pulse keeps a log
            kind.transport,
            cycle_timeout=config.limits.handshake_timeout,
            cap_seconds=config.limits.publish_cap_seconds,
        )
        yield SessionPlan("f", 0, [], churn=churn)
    if "h" in config.scenarios and pulse_ws and kind.redis:
        for online in config.presence_online:
            presence = PresencePlan(
                f"h{online}",
                online,
                config.presence_cycles,
                config.presence_concurrency,
                cycle_timeout=config.limits.handshake_timeout,
                cap_seconds=config.limits.publish_cap_seconds,
            )
            yield SessionPlan(presence.name, 0, [], presence=presence)


async def sign_up_watchers(target: Target, count: int) -> tuple[Target, list[str]]:
    """Sign up ``count`` watchers (``w0``, ``w1``, ...; 4 at a time, as the password
    hashes keep a core busy each); the target whose published statuses mention them
    all, and their tokens."""
    names = [f"w{number}" for number in range(count)]
    tokens: list[str] = []
    for start in range(0, count, 4):
        batch = names[start : start + 4]
        tokens += await asyncio.gather(*(sign_up(target.host, target.port, n) for n in batch))
    return replace(target, status_suffix="".join(f" @{name}" for name in names)), tokens


def run_matrix(config: Config, workdir: Path, progress: Callable[[str], None]) -> Matrix:
    """Every session of every selected server, each on a fresh server process."""
    matrix = Matrix()
    with contextlib.ExitStack() as stack:
        redis_url = None
        if any(kind.redis for kind in config.servers):
            redis_url = stack.enter_context(redis_server(workdir))
            progress(f"redis-server at {redis_url}")
        for kind in config.servers:
            for plan in sessions_for(kind, config):
                name = plan.name
                if plan.churn:
                    what = f"{plan.churn.cycles} churn cycles, {plan.churn.concurrency} in flight"
                elif plan.presence:
                    what = (
                        f"{plan.presence.online} users online, {plan.presence.cycles}"
                        f" presence cycles, {plan.presence.concurrency} in flight"
                    )
                else:
                    what = f"{plan.subscribers} subscribers"
                    if plan.watchers:
                        what += f" and {plan.watchers} notification watchers"
                progress(f"[{kind.key}] session {name}: {what} …")
                record = SessionRecord(kind, name, None)
                matrix.records.append(record)
                started = time.monotonic()
                try:
                    if plan.presence is not None and redis_url:
                        asyncio.run(flush_redis(redis_url))  # no earlier session's presence
                    with serve(kind, workdir, redis_url, name) as server:
                        record.log_path = str(server.process.log_path)
                        log = server.process.log_path
                        seen = 0

                        def mark(log: Path = log) -> None:
                            nonlocal seen
                            seen = log.stat().st_size

                        try:
                            if plan.churn is not None:
                                record.churn = asyncio.run(
                                    run_churn(server.target, plan.churn, server.process.pid)
                                )
                                mark()
                            elif plan.presence is not None:
                                assert redis_url is not None
                                record.presence = asyncio.run(
                                    run_presence(
                                        server.target,
                                        server.process.pid,
                                        server.process.env,
                                        redis_url,
                                        plan.presence,
                                        config.limits,
                                        before_closing=mark,
                                    )
                                )
                            else:
                                target, watcher_tokens = server.target, list[str]()
                                if plan.watchers:
                                    target, watcher_tokens = asyncio.run(
                                        sign_up_watchers(target, plan.watchers)
                                    )
                                record.result = asyncio.run(
                                    run_session(
                                        kind.key,
                                        target,
                                        plan.subscribers,
                                        plan.phases,
                                        server.process.pid,
                                        config.limits,
                                        plan.before,
                                        before_closing=mark,
                                        watcher_tokens=watcher_tokens,
                                        watcher_own_shapes=plan.watcher_own_shapes,
                                    )
                                )
                        finally:
                            seen = seen or log.stat().st_size
                    record.exit_status = server.exit_status
                    with log.open("rb") as text:
                        during = text.read(seen).decode(errors="replace")
                        after = text.read().decode(errors="replace")
                    record.log_issues_during_run = suspicious_lines(during)
                    record.log_issues_at_shutdown = suspicious_lines(after)
                except Exception as error:
                    record.error = f"{type(error).__name__}: {error}"
                    progress(f"[{kind.key}] session {name} FAILED: {record.error}")
                progress(f"[{kind.key}] session {name} done in {time.monotonic() - started:.0f}s")
                if record.result is not None:
                    for phase in record.result.phases:
                        progress("   " + _phase_line(phase))
                if record.churn is not None:
                    progress("   " + _churn_line(record.churn))
                if record.presence is not None:
                    progress("   " + _presence_line(record.presence))
        if "w" in config.scenarios:
            run_write_sessions(config, workdir, redis_url, matrix, progress)
    return matrix


def run_write_sessions(
    config: Config,
    workdir: Path,
    redis_url: str | None,
    matrix: Matrix,
    progress: Callable[[str], None],
) -> None:
    """Scenario (w): every write server on a fresh database, one after another (each
    Pulse row right after its stock row); PostgreSQL is a throwaway cluster started
    here, skipped with a note when it cannot start."""
    servers = config.write_servers
    if not servers:
        return
    plan = WritePlan(
        config.write_mutations,
        config.write_warmup,
        config.write_concurrency,
        request_timeout=config.limits.request_timeout,
        cap_seconds=config.limits.publish_cap_seconds,
    )
    with contextlib.ExitStack() as stack:
        postgres_url, postmaster = "", None
        if any(server.database == "postgres" for server in servers):
            try:
                from tests.e2e.servers import postgres_cluster  # bin/with-postgres's cluster

                postgres_url = stack.enter_context(postgres_cluster())
            except Exception as error:  # not installed, not importable, did not start
                matrix.postgres_skipped = f"{type(error).__name__}: {error}"
                progress(f"(w) PostgreSQL rows skipped: {matrix.postgres_skipped}")
                servers = [server for server in servers if server.database != "postgres"]
            else:
                port = int(postgres_url.rsplit(":", 1)[1].split("/", 1)[0])
                postmaster = find_postmaster(port)
                progress(f"PostgreSQL at {postgres_url} (postmaster pid {postmaster})")
        for server in servers:
            matrix.writes.append(
                _write_session(server, plan, workdir, redis_url, postgres_url, postmaster, progress)
            )


def _write_session(
    server: WriteServer,
    plan: WritePlan,
    workdir: Path,
    redis_url: str | None,
    postgres_url: str,
    postmaster: int | None,
    progress: Callable[[str], None],
) -> WriteRecord:
    """One (w) session: a fresh database, a fresh server, the bursts, the log scan."""
    from tests.e2e.servers import new_database  # CREATE DATABASE, or a new SQLite file

    record = WriteRecord(server)
    progress(
        f"[{server.key}] session w: {plan.warmup} + {plan.mutations} mutations,"
        f" {plan.concurrency} in flight, no subscribers …"
    )
    started = time.monotonic()
    kind = ServerKind(server.key, server.label, server.app, server.redis)
    try:
        if server.redis and redis_url:
            asyncio.run(flush_redis(redis_url))  # nothing cached by an earlier server
        name = f"w_{server.key.replace('-', '_')}"
        database_url = new_database(
            postgres_url if server.database == "postgres" else "", name, workdir
        )
        plain = server.app == "pulse" and server.command == "daphne"
        with serve(kind, workdir, redis_url, "w", database_url, plain_daphne=plain) as running:
            log = running.process.log_path
            record.log_path = str(log)
            seen = 0
            try:
                record.result = run_writes(
                    server,
                    running.target,
                    plan,
                    running.process.pid,
                    postmaster if server.database == "postgres" else None,
                )
            finally:
                seen = log.stat().st_size
        record.exit_status = running.exit_status
        if record.result is not None:
            record.result.stored = stored_rows(database_url, server.table)
        expected = PLAIN_DAPHNE if plain else None
        with log.open("rb") as text:
            during = text.read(seen).decode(errors="replace")
            after = text.read().decode(errors="replace")
        record.log_issues_during_run = suspicious_lines(during, expected=expected)
        record.log_issues_at_shutdown = suspicious_lines(after, expected=expected)
    except Exception as error:
        record.error = f"{type(error).__name__}: {error}"
        progress(f"[{server.key}] session w FAILED: {record.error}")
    progress(f"[{server.key}] session w done in {time.monotonic() - started:.0f}s")
    if record.result is not None:
        progress("   " + _write_line(record.result))
    return record


def _write_line(result: WriteResult) -> str:
    return (
        f"w: {result.ok}/{result.planned} ok ({result.failed} failed) in {result.seconds:.1f}s,"
        f" {_num(result.mutations_per_second)} mutations/s, requests p50"
        f" {_num(result.request_p50_ms)} ms, p99 {_num(result.request_p99_ms)} ms, server CPU"
        f" {_num(result.cpu_ms_per_mutation, 2)} ms/mutation"
        + (
            f", PostgreSQL CPU {_num(result.database_cpu_ms_per_mutation, 2)} ms/mutation"
            if result.database_cpu_seconds is not None
            else ""
        )
    )


def _presence_line(presence: PresenceResult) -> str:
    churn = presence.churn
    cycles = f"{churn.cycles_ok}/{churn.cycles_planned}" if churn else "0"
    server = presence.calls(SERVER) - presence.calls(SERVER, "EVALSHA MAINTAIN")
    return (
        f"{presence.name}: {presence.online_opened}/{presence.online} online,"
        f" {cycles} cycles ok, {_num(presence.per_cycle(server), 2)} server Redis commands"
        f"/cycle (refresher aside), of which EVALSHA APPLY"
        f" {_num(presence.per_cycle(presence.calls(SERVER, 'EVALSHA APPLY')), 2)}"
    )


def _churn_line(churn: ChurnResult) -> str:
    failed = sum(churn.failures.values())
    return (
        f"{churn.name}: {churn.cycles_ok}/{churn.cycles_planned} cycles ok ({failed} failed)"
        f" in {churn.seconds:.1f}s, {_num(churn.cycles_per_second)} cycles/s"
        f", server CPU {_num(churn.cpu_ms_per_cycle, 2)} ms/cycle"
        f", cycle p50 {_num(churn.cycle_p50_ms)} ms, p99 {_num(churn.cycle_p99_ms)} ms"
    )


def _phase_line(phase: PhaseResult) -> str:
    pct = f"{phase.delivered_pct:.2f}%" if phase.delivered_pct is not None else "-"
    line = (
        f"{phase.name}: delivered {phase.delivered}/{phase.expected} ({pct}, {phase.drain_end})"
        f", p50 {_num(phase.latency_p50_ms)} ms, p99 {_num(phase.latency_p99_ms)} ms"
        f", server CPU {_num(phase.cpu_us_per_delivery)} µs/delivery"
        f", requests p50 {_num(phase.request_p50_ms)} ms"
    )
    if phase.watchers:
        line += (
            f"; notifications {phase.notes_delivered}/{phase.notes_expected}"
            f", p50 {_num(phase.notes_latency_p50_ms)} ms"
        )
    return line


# Report ------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _pct(phase: PhaseResult | None) -> str:
    if phase is None or phase.delivered_pct is None:
        return "-"
    text = f"{phase.delivered_pct:.2f}%" if phase.delivered_pct < 100 else "100%"
    return text if phase.drain_end == "complete" else f"{text} ({phase.drain_end})"


def _lat(phase: PhaseResult | None) -> str:
    if phase is None:
        return "-"
    return f"{_num(phase.latency_p50_ms)} / {_num(phase.latency_p99_ms)}"


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


def summary_table(matrix: Matrix, config: Config) -> str:
    """The headline table: one row per server."""
    n, big = f"{config.small:,}", f"{config.large:,}"
    header = [
        "server",
        f"(a) {n} subs x {config.events} b2b: delivered",
        "(a) server CPU µs/delivery",
        "(a) latency p50 / p99 ms",
        f"(b) {big} subs x {config.events} b2b: delivered",
        "(b) server CPU µs/delivery",
        "(b) fan-out time s",
        f"(c) {big} subs @ {config.rate:g}/s x {config.rate_events}: latency p50 / p99 ms",
        "(c) delivered",
        f"(d) KiB per open subscription @ {n}",
        f"(d) KiB per open subscription @ {big}",
        f"peak RSS MiB @ {big}",
    ]
    rows = [header, ["---"] * len(header)]
    for kind in config.servers:
        if not matrix.ran(kind.key, "abc"):
            continue  # no fan-out session of this server (only scenarios e to w ran)
        a = matrix.phase(kind.key, "a")
        b = matrix.phase(kind.key, "b")
        c = matrix.phase(kind.key, "c")
        small = matrix.session(kind.key, "a")
        large = matrix.session(kind.key, "b") or matrix.session(kind.key, "c")
        peaks = [
            session.rss_kib_peak
            for name in ("b", "c")
            if (session := matrix.session(kind.key, name)) and session.rss_kib_peak
        ]
        rows.append(
            [
                kind.label,
                _pct(a[1] if a else None),
                _num(a[1].cpu_us_per_delivery) if a else "-",
                _lat(a[1] if a else None),
                _pct(b[1] if b else None),
                _num(b[1].cpu_us_per_delivery) if b else "-",
                _num(b[1].fanout_seconds) if b else "-",
                _lat(c[1] if c else None),
                _pct(c[1] if c else None),
                _num(small.kib_per_subscription) if small else "-",
                _num(large.kib_per_subscription) if large else "-",
                _mib(max(peaks)) if peaks else "-",
            ]
        )
    return _markdown(rows) if len(rows) > 2 else ""


def transport_table(matrix: Matrix, config: Config) -> str:
    """Pulse over WebSocket beside Pulse over SSE, same layer, same run: (a) and (b)."""
    n, big = f"{config.small:,}", f"{config.large:,}"
    header = [
        "server",
        f"(a) {n} subs: delivered",
        "(a) µs/delivery",
        "(a) p50 / p99 ms",
        f"(b) {big} subs: delivered",
        "(b) µs/delivery",
        "(b) p50 / p99 ms",
        "(b) fan-out s",
        "SSE / WebSocket CPU per delivery (a) / (b)",
    ]
    rows = [header, ["---"] * len(header)]
    pairs = (("pulse-redis", "pulse-redis-sse"), ("pulse-memory", "pulse-memory-sse"))
    for ws_key, sse_key in pairs:
        chosen = {kind.key: kind for kind in config.servers}
        if ws_key not in chosen and sse_key not in chosen:
            continue
        found = {
            key: (matrix.phase(key, "a"), matrix.phase(key, "b"))
            for key in (ws_key, sse_key)
            if key in chosen and matrix.ran(key, "ab")
        }
        for key, (a, b) in found.items():
            pa, pb = (a[1] if a else None), (b[1] if b else None)
            ratio = "-"
            if key == sse_key and ws_key in found:
                ws_a, ws_b = found[ws_key]
                ratio = " / ".join(
                    _ratio(sse[1] if sse else None, ws[1] if ws else None)
                    for sse, ws in ((a, ws_a), (b, ws_b))
                )
            rows.append(
                [
                    chosen[key].label,
                    _pct(pa),
                    _num(pa.cpu_us_per_delivery) if pa else "-",
                    _lat(pa),
                    _pct(pb),
                    _num(pb.cpu_us_per_delivery) if pb else "-",
                    _lat(pb),
                    _num(pb.fanout_seconds) if pb else "-",
                    ratio,
                ]
            )
    return _markdown(rows) if len(rows) > 2 else ""


def _ratio(sse: PhaseResult | None, ws: PhaseResult | None) -> str:
    if sse is None or ws is None or not sse.cpu_us_per_delivery or not ws.cpu_us_per_delivery:
        return "-"
    return f"{sse.cpu_us_per_delivery / ws.cpu_us_per_delivery:.2f}x"


def churn_table(matrix: Matrix, config: Config) -> str:
    """(f): subscriber lives per second, and what each cost the server."""
    header = [
        "server",
        "transport",
        "subscribed when",
        "cycles ok / planned",
        "failed",
        f"cycles/s ({config.churn_concurrency} in flight)",
        "server CPU ms/cycle",
        "cycle p50 / p99 / max ms",
        "connect → subscribed p50 / p99 ms",
        "loadgen CPU s",
    ]
    rows = [header, ["---"] * len(header)]
    for kind in config.servers:
        churn = matrix.churn(kind.key)
        if churn is None:
            continue
        rows.append(
            [
                kind.label,
                "SSE" if churn.transport == "sse" else "WebSocket",
                churn.subscribed_point,
                f"{churn.cycles_ok} / {churn.cycles_planned}",
                str(sum(churn.failures.values())),
                _num(churn.cycles_per_second),
                _num(churn.cpu_ms_per_cycle, 2),
                f"{_num(churn.cycle_p50_ms)} / {_num(churn.cycle_p99_ms)}"
                f" / {_num(churn.cycle_max_ms)}",
                f"{_num(churn.subscribed_p50_ms)} / {_num(churn.subscribed_p99_ms)}",
                _num(churn.client_cpu_seconds),
            ]
        )
    return _markdown(rows) if len(rows) > 2 else ""


def mutation_table(matrix: Matrix, config: Config) -> str:
    """(e): createStatusChange latency under a burst, with and without subscribers."""
    header = [
        "server",
        f"(e) {config.mutations} mutations, {config.mutation_concurrency} at a time,"
        " no subscribers: p50 / p99 ms",
        f"with {config.small:,} subscribers: p50 / p99 ms",
        "failed mutations (none / with)",
        "burst time s (none / with)",
        "deliveries with subscribers",
        "server CPU µs/delivery",
    ]
    rows = [header, ["---"] * len(header)]
    for kind in config.servers:
        none, with_subs = matrix.phase(kind.key, "e0"), matrix.phase(kind.key, "e1")
        if none is None and with_subs is None:
            continue
        e0, e1 = none[1] if none else None, with_subs[1] if with_subs else None

        def req(p: PhaseResult | None) -> str:
            return "-" if p is None else f"{_num(p.request_p50_ms)} / {_num(p.request_p99_ms)}"

        rows.append(
            [
                kind.label,
                req(e0),
                req(e1),
                f"{e0.publish_errors if e0 else '-'} / {e1.publish_errors if e1 else '-'}",
                f"{_num(e0.publish_seconds) if e0 else '-'} / "
                f"{_num(e1.publish_seconds) if e1 else '-'}",
                _pct(e1),
                _num(e1.cpu_us_per_delivery) if e1 else "-",
            ]
        )
    return _markdown(rows) if len(rows) > 2 else ""


def write_table(matrix: Matrix, config: Config) -> str:
    """(w): the cost of a write, Pulse beside the stock pattern on the same database and
    layer."""
    header = [
        "server",
        "database",
        "channel layer",
        "command",
        "mutations/s",
        "p50 / p99 ms",
        "server CPU ms per mutation",
        "PostgreSQL CPU ms per mutation",
        "Pulse / stock CPU ratio (same database and layer)",
        "failed",
    ]
    rows = [header, ["---"] * len(header)]
    for record in matrix.writes:
        server, result = record.server, record.result
        cells = [server.label, server.database, server.layer, f"`{server.command_line}`"]
        if result is None:
            rows.append([*cells, "FAILED: " + (record.error or "no result"), *[""] * 5])
            continue
        ratio = "-"
        if server.app == "pulse":
            stock = matrix.write(WriteServer("stock", server.database, server.redis))
            if stock and stock.cpu_ms_per_mutation and result.cpu_ms_per_mutation:
                ratio = f"{result.cpu_ms_per_mutation / stock.cpu_ms_per_mutation:.2f}x"
        failed = str(result.failed)
        if result.warmup_failed:
            failed += f" (and {result.warmup_failed} of the warm-up)"
        rows.append(
            [
                *cells,
                _num(result.mutations_per_second),
                f"{_num(result.request_p50_ms)} / {_num(result.request_p99_ms)}",
                _num(result.cpu_ms_per_mutation, 2),
                _num(result.database_cpu_ms_per_mutation, 2),
                ratio,
                failed,
            ]
        )
    return _markdown(rows) if len(rows) > 2 else ""


def write_notes(matrix: Matrix, config: Config) -> list[str]:
    """What a reader of the (w) table must know about how it was made."""
    notes = [
        "- stock: `bench/stock_app.py` with `STOCK_DATABASE_URL`, strawberry + Channels as"
        " their docs pair a model with a group: the mutation does"
        " `await Status.objects.acreate(...)`, a `post_save` receiver"
        " `transaction.on_commit(lambda: async_to_sync(layer.group_send)(...))`; no"
        " authentication. Pulse: a signed-up user's bearer token on every mutation.",
        f"- Each row: a fresh server process on a fresh database; {config.write_warmup}"
        f" warm-up mutations (not measured), then {config.write_mutations}, all from one"
        " client process with one keep-alive connection per slot in flight. Server CPU:"
        " the server process's utime + stime over the measured burst (and 0.25 s after"
        " it) ÷ mutations that succeeded; mutations/s: succeeded ÷ first send to last"
        " answer.",
        "- SQLite: a file per row, WAL and `synchronous=NORMAL` for both (Pulse's settings;"
        " the stock app sets the same pragmas). Pulse runs with `DEBUG=0` and otherwise"
        " its settings' defaults"
        + (
            f" (from this environment: {', '.join(f'`{name}`' for name in passed)})"
            if (passed := sorted(n for n in os.environ if n.startswith(("DATABASE_", "PULSE_"))))
            else ""
        )
        + ".",
    ]
    if any(r.server.database == "postgres" for r in matrix.writes):
        notes.append(
            "- PostgreSQL: one throwaway cluster for the run (`tests/e2e/servers.py`, as"
            " `bin/with-postgres`: `fsync`, `synchronous_commit` and `full_page_writes` off),"
            " a `CREATE DATABASE` per row. Its processes' CPU is not in the server's column;"
            " it is the PostgreSQL column (the postmaster, its children, and those reaped)."
        )
    if matrix.postgres_skipped:
        notes.append(f"- **PostgreSQL rows skipped**: {matrix.postgres_skipped}")
    return notes


def _times(g: float | None, a: float | None) -> str:
    return "-" if g is None or not a else f"{g / a:.2f}x"


def notification_table(matrix: Matrix, config: Config) -> str:
    """(g): the activity fan-out of (a) with the watchers' notifications added, beside
    the same run's (a); and the notifications themselves."""
    header = [
        "server",
        "watchers' documents",
        f"(a) {config.small:,} subs x {config.events} b2b: delivered",
        "(a) server CPU µs/delivery",
        "(a) latency p50 / p99 ms",
        f"(g) same + {config.watchers} watchers mentioned: activities delivered",
        "(g) server CPU µs/activity delivery",
        "(g) latency p50 / p99 ms",
        "(g) notifications delivered",
        "(g) notification latency p50 / p99 ms",
        "(g) / (a): CPU per delivery",
        "(g) / (a): latency p50 / p99",
    ]
    rows = [header, ["---"] * len(header)]
    variants = (("g", "one shared document"), ("g_own", "one named operation each"))
    for kind, (name, documents) in itertools.product(config.servers, variants):
        found_a, found_g = matrix.phase(kind.key, "a"), matrix.phase(kind.key, name)
        if not any(r.server == kind and r.session == name for r in matrix.records):
            continue
        a, g = (found_a[1] if found_a else None), (found_g[1] if found_g else None)
        cpu = "-"
        if a and g and a.cpu_us_per_delivery and g.cpu_us_per_delivery:
            ratio = g.cpu_us_per_delivery / a.cpu_us_per_delivery
            verdict = "within" if ratio <= 1.10 else "over"
            cpu = f"{ratio:.2f}x ({verdict} 10 %)"
        notes = "-"
        if g is not None and g.notes_expected:
            pct = 100.0 * g.notes_delivered / g.notes_expected
            notes = f"{g.notes_delivered} / {g.notes_expected} ({pct:.4g} %)"
            if g.watchers_complete < g.watchers:
                notes += f"; {g.watchers_complete} of {g.watchers} watchers got all"
            if g.notes_duplicates:
                notes += f", {g.notes_duplicates} duplicates"
        rows.append(
            [
                kind.label,
                documents,
                _pct(a),
                _num(a.cpu_us_per_delivery) if a else "-",
                _lat(a),
                _pct(g),
                _num(g.cpu_us_per_delivery) if g else "-",
                _lat(g),
                notes,
                f"{_num(g.notes_latency_p50_ms)} / {_num(g.notes_latency_p99_ms)}" if g else "-",
                cpu,
                (
                    f"{_times(g.latency_p50_ms, a.latency_p50_ms)} / "
                    f"{_times(g.latency_p99_ms, a.latency_p99_ms)}"
                    if a and g
                    else "-"
                ),
            ]
        )
    return _markdown(rows) if len(rows) > 2 else ""


def _is_presence_publish(command: str) -> bool:
    return command.startswith("PUBLISH ") and "pulse.presence" in command


def presence_table(matrix: Matrix, config: Config) -> str:
    """(h): Redis commands per presence cycle (a connection opened and closed), by K."""
    header = [
        "server",
        "K users online (sockets held)",
        "cycles ok / planned",
        f"cycles/s ({config.presence_concurrency} in flight)",
        "server CPU ms/cycle",
        "cycle p50 / p99 ms",
        "Redis commands from the server per cycle (refresher aside)",
        "EVALSHA APPLY (presence) per cycle",
        "PUBLISH pulse.presence per cycle",
        "other commands per cycle",
        "commands run inside APPLY per cycle",
        "refresher EVALSHA MAINTAIN in the window (commands inside)",
        "window s",
    ]
    rows = [header, ["---"] * len(header)]
    for kind in config.servers:
        for h in matrix.presence(kind.key):
            churn = h.churn
            maintain = h.calls(SERVER, "EVALSHA MAINTAIN")
            server = h.calls(SERVER) - maintain
            applies = h.calls(SERVER, "EVALSHA APPLY")
            publishes = sum(
                c.calls
                for c in h.commands
                if c.source == SERVER and _is_presence_publish(c.command)
            )
            rows.append(
                [
                    kind.label,
                    f"{h.online:,} ({h.online_opened:,})",
                    f"{churn.cycles_ok} / {churn.cycles_planned}" if churn else "-",
                    _num(churn.cycles_per_second) if churn else "-",
                    _num(churn.cpu_ms_per_cycle, 2) if churn else "-",
                    f"{_num(churn.cycle_p50_ms)} / {_num(churn.cycle_p99_ms)}" if churn else "-",
                    _num(h.per_cycle(server), 2),
                    _num(h.per_cycle(applies), 2),
                    _num(h.per_cycle(publishes), 2),
                    _num(h.per_cycle(server - applies - publishes), 2),
                    _num(h.per_cycle(h.calls(SCRIPT, script="EVALSHA APPLY")), 2),
                    f"{maintain} ({h.calls(SCRIPT, script='EVALSHA MAINTAIN')})",
                    _num(h.window_seconds),
                ]
            )
    return _markdown(rows) if len(rows) > 2 else ""


def presence_commands_table(matrix: Matrix, config: Config) -> str:
    """(h): every command of the windows, per cycle, one column per K."""
    sessions = [h for kind in config.servers for h in matrix.presence(kind.key)]
    if not sessions:
        return ""
    keys: dict[tuple[str, str, str], None] = {}
    for h in sessions:
        for c in h.commands:
            keys[(c.source, c.script, c.command)] = None
    order = sorted(keys, key=lambda k: (k[0] != SERVER, k[1], k[2]))
    header = ["sent by", "command", *(f"K = {h.online:,}: calls (per cycle)" for h in sessions)]
    rows = [header, ["---"] * len(header)]
    for source, script, command in order:
        cells = []
        for h in sessions:
            calls = sum(
                c.calls
                for c in h.commands
                if (c.source, c.script, c.command) == (source, script, command)
            )
            cells.append(f"{calls} ({_num(h.per_cycle(calls), 3)})")
        who = "the server (a client)" if source == SERVER else f"inside {script or 'a script'}"
        rows.append([who, command, *cells])
    totals = []
    for h in sessions:
        monitor = h.calls()
        stats = sum(h.commandstats.values())
        totals.append(
            f"MONITOR {monitor}, commandstats {stats}, total_commands_processed"
            f" {h.total_commands_processed if h.total_commands_processed is not None else '-'}"
        )
    rows.append(["cross-check", "all of the above", *totals])
    return _markdown(rows)


def details_table(matrix: Matrix) -> str:
    """Every phase with every number."""
    header = [
        "server",
        "phase",
        "subs open/wanted",
        "open s",
        "mode",
        "published",
        "delivered/expected",
        "dup",
        "drain",
        "publish s",
        "fan-out s",
        "server CPU s",
        "µs/delivery",
        "loadgen CPU s",
        "latency p50/p99/max ms",
        "request p50/p99 ms",
        "event complete p50/max ms",
        "RSS idle/open/peak MiB",
        "notifications delivered/expected, p50/p99 ms",
    ]
    rows = [header, ["---"] * len(header)]
    for record in matrix.records:
        session = record.result
        if record.churn is not None or record.presence is not None:
            continue  # in the churn and presence tables
        if session is None:
            rows.append([record.server.key, record.session, "FAILED: " + (record.error or "")])
            continue
        for phase in session.phases:
            rows.append(
                [
                    record.server.key,
                    phase.name,
                    f"{phase.subscribers}/{session.subscribers_wanted}",
                    _num(session.open_seconds),
                    phase.mode,
                    str(phase.published),
                    f"{phase.delivered}/{phase.expected}",
                    str(phase.duplicates),
                    phase.drain_end,
                    _num(phase.publish_seconds),
                    _num(phase.fanout_seconds),
                    _num(phase.server_cpu_seconds, 2),
                    _num(phase.cpu_us_per_delivery),
                    _num(phase.client_cpu_seconds),
                    f"{_num(phase.latency_p50_ms)}/{_num(phase.latency_p99_ms)}"
                    f"/{_num(phase.latency_max_ms)}",
                    f"{_num(phase.request_p50_ms)}/{_num(phase.request_p99_ms)}",
                    f"{_num(phase.event_complete_p50_ms)}/{_num(phase.event_complete_max_ms)}",
                    f"{_mib(session.rss_kib_idle)}/{_mib(session.rss_kib_open)}"
                    f"/{_mib(session.rss_kib_peak)}",
                    (
                        f"{phase.notes_delivered}/{phase.notes_expected},"
                        f" {_num(phase.notes_latency_p50_ms)}/{_num(phase.notes_latency_p99_ms)}"
                        if phase.watchers
                        else "-"
                    ),
                ]
            )
    return _markdown(rows)


def findings(matrix: Matrix) -> list[str]:
    """Anything a reader must know: failures, losses, errors, suspicious log lines."""
    notes: list[str] = []
    for record in matrix.records:
        where = f"{record.server.key}/{record.session}"
        if record.error:
            notes.append(f"{where}: session failed: {record.error} (log: {record.log_path})")
        churn = record.churn
        if churn is not None:
            if churn.failures:
                shown = "; ".join(f"{n}x {why}" for why, n in churn.failures.items())
                notes.append(
                    f"{where}: {sum(churn.failures.values())} of {churn.cycles_started}"
                    f" churn cycles failed: {shown}"
                )
            if churn.capped or churn.cycles_started < churn.cycles_planned:
                notes.append(
                    f"{where}: only {churn.cycles_started} of {churn.cycles_planned} churn"
                    " cycles started within the cap"
                )
        presence = record.presence
        if presence is not None:
            notes += _presence_findings(where, presence)
        session = record.result
        if session is not None:
            if session.open_failures:
                notes.append(f"{where}: sockets not opened: {session.open_failures}")
            if session.watchers_opened < session.watchers_wanted:
                notes.append(
                    f"{where}: only {session.watchers_opened}/{session.watchers_wanted}"
                    " notification watchers opened"
                )
            live = session.subscribers_opened + session.watchers_opened
            if session.warm_subscribers < live:
                notes.append(
                    f"{where}: only {session.warm_subscribers}/{live}"
                    " subscriptions received a warm-up event"
                )
            if session.closed_by_server:
                notes.append(f"{where}: sockets closed by the server: {session.closed_by_server}")
            for phase in session.phases:
                if phase.expected and phase.delivered < phase.expected:
                    notes.append(
                        f"{where} phase {phase.name}: {phase.expected - phase.delivered} of"
                        f" {phase.expected} deliveries missing after the drain ({phase.drain_end})"
                    )
                if phase.unacked_deliveries:
                    notes.append(
                        f"{where} phase {phase.name}: {phase.unacked_deliveries} deliveries of"
                        " events whose publish request failed or timed out (the server did"
                        " publish them: counted as published and delivered)"
                    )
                if phase.duplicates:
                    notes.append(f"{where} phase {phase.name}: {phase.duplicates} duplicates")
                if phase.notes_delivered < phase.notes_expected:
                    notes.append(
                        f"{where} phase {phase.name}:"
                        f" {phase.notes_expected - phase.notes_delivered} of"
                        f" {phase.notes_expected} notifications missing after the drain"
                        f" ({phase.drain_end}); {phase.watchers_complete} of"
                        f" {phase.watchers} watchers got all of theirs"
                    )
                if phase.notes_duplicates:
                    notes.append(
                        f"{where} phase {phase.name}: {phase.notes_duplicates} duplicate"
                        " notifications"
                    )
                if phase.errors:
                    notes.append(f"{where} phase {phase.name}: frame errors {phase.errors}")
                if phase.publish_errors:
                    notes.append(
                        f"{where} phase {phase.name}: {phase.publish_errors} failed publishes,"
                        f" e.g. {phase.publish_error_samples}"
                    )
        notes += _log_notes(
            where,
            (record.log_issues_during_run, "while the subscribers were connected"),
            (
                record.log_issues_at_shutdown,
                "after the load generator dropped its sockets, and at shutdown",
            ),
        )
    return notes


def write_findings(matrix: Matrix) -> list[str]:
    """(w): failed sessions, failed mutations, suspicious log lines."""
    notes: list[str] = []
    if matrix.postgres_skipped:
        notes.append(f"(w): PostgreSQL rows skipped: {matrix.postgres_skipped}")
    for record in matrix.writes:
        where = f"{record.server.key}/w"
        if record.error:
            notes.append(f"{where}: session failed: {record.error} (log: {record.log_path})")
        result = record.result
        if result is not None:
            if result.failed:
                shown = "; ".join(f"{n}x {why}" for why, n in result.failures.items())
                notes.append(
                    f"{where}: {result.failed} of {result.planned} mutations failed: {shown}"
                )
            if result.warmup_failed:
                notes.append(
                    f"{where}: {result.warmup_failed} of {result.warmup_planned} warm-up"
                    " mutations failed"
                )
            busy = result.other_cpu_seconds / result.window_seconds if result.window_seconds else 0
            if busy > BUSY_MACHINE:
                notes.append(
                    f"{where}: other processes used {result.other_cpu_seconds:.1f} s of CPU"
                    f" during the {result.window_seconds:.1f} s burst ({busy:.2f} cores):"
                    " the machine was not quiet, its figures are less reliable"
                )
            acked = result.ok + result.warmup_ok
            if result.stored is None:
                notes.append(f"{where}: could not count the rows stored in {record.server.table}")
            elif result.stored != acked:
                notes.append(
                    f"{where}: {result.stored} rows in {record.server.table} for {acked}"
                    " acknowledged mutations"
                )
        notes += _log_notes(
            where,
            (record.log_issues_during_run, "while running"),
            (record.log_issues_at_shutdown, "at shutdown"),
        )
    return notes


def _log_notes(where: str, *issues: tuple[tuple[int, list[str]], str]) -> list[str]:
    """One note per window with suspicious log lines: ((count, lines), when)."""
    notes = []
    for (count, lines), when in issues:
        if count:
            shown = "\n".join(f"    {line}" for line in lines)
            notes.append(f"{where}: {count} suspicious log lines {when}:\n{shown}")
    return notes


def _presence_findings(where: str, presence: PresenceResult) -> list[str]:
    notes = []
    if presence.open_failures:
        notes.append(f"{where}: sockets of online users not opened: {presence.open_failures}")
    if presence.online_in_redis is None or presence.online_in_redis < presence.online_opened:
        notes.append(
            f"{where}: Redis had {presence.online_in_redis} users online, not the"
            f" {presence.online_opened} holding a socket, when the window began"
        )
    churn = presence.churn
    if churn is None:
        notes.append(f"{where}: no presence cycle ran")
    else:
        if churn.failures:
            shown = "; ".join(f"{n}x {why}" for why, n in churn.failures.items())
            notes.append(f"{where}: {sum(churn.failures.values())} presence cycles failed: {shown}")
        if churn.cycles_started < churn.cycles_planned:
            notes.append(
                f"{where}: only {churn.cycles_started} of {churn.cycles_planned} presence"
                " cycles started within the cap"
            )
    if presence.closed_by_server:
        notes.append(f"{where}: sockets closed by the server: {presence.closed_by_server}")
    if presence.errors:
        notes.append(f"{where}: frame errors on the held sockets: {presence.errors}")
    if not presence.commands:
        notes.append(f"{where}: MONITOR saw no command of the server in the window")
    return notes


def _markdown(rows: list[list[str]]) -> str:
    return "\n".join(
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows
    )


def _revision() -> str:
    """The checkout's commit, and how many tracked files differed from it (now)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    dirty = [line[3:] for line in changed if line.strip()]
    return f"`{commit}`" + (f" with uncommitted changes to {len(dirty)} files" if dirty else "")


def machine_notes(argv: list[str], workdir: Path, revision: str = "") -> list[str]:
    """Where and how this ran."""
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo") as info:
        memory = f"{int(info.readline().split()[1]) / 1024 / 1024:.1f} GiB"
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in (
            "django",
            "channels",
            "channels-redis",
            "daphne",
            "twisted",
            "strawberry-graphql",
            "strawberry-graphql-django",
            "websockets",
            "redis",
        )
    )
    redis_version = subprocess.run(
        [shutil.which("redis-server") or "redis-server", "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    ).stdout.strip()
    return [
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{' '.join(['.venv/bin/python -m bench.run', *argv])}`",
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {memory} RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        "- load generator and servers share the machine; open-file limit"
        f" {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} for both (asked for {NOFILE})",
        f"- versions: {versions}; {redis_version}",
        f"- code: {revision or _revision()}",
        f"- logs and databases: `{workdir}`",
    ]


def report(
    matrix: Matrix,
    config: Config,
    argv: list[str],
    workdir: Path,
    seconds: float,
    revision: str = "",
) -> str:
    parts = ["# Pulse fan-out benchmark", "", *machine_notes(argv, workdir, revision)]
    parts.append(f"- total run time: {seconds / 60:.1f} min")
    summary = summary_table(matrix, config)
    if summary:
        parts += ["", "## Summary", "", summary]
    transports = transport_table(matrix, config)
    if transports:
        parts += ["", "## Pulse: WebSocket and SSE subscribers", "", transports]
    churn = churn_table(matrix, config)
    if churn:
        title = (
            f"## (f) Connection churn: {config.churn_cycles} subscriber lives,"
            f" {config.churn_concurrency} in flight"
        )
        parts += ["", title, "", churn]
    mutations = mutation_table(matrix, config)
    if mutations:
        parts += ["", "## Mutation latency under fan-out (Pulse)", "", mutations]
    notifications = notification_table(matrix, config)
    if notifications:
        title = (
            f"## (g) Notifications: the fan-out of (a) with {config.watchers} watchers"
            " mentioned by every event"
        )
        parts += ["", title, "", notifications]
    presence = presence_table(matrix, config)
    if presence:
        title = (
            f"## (h) Presence: Redis commands per connection opened and closed"
            f" ({config.presence_cycles} cycles)"
        )
        parts += ["", title, "", presence, "", "Every command of the windows:", ""]
        parts.append(presence_commands_table(matrix, config))
    writes = write_table(matrix, config)
    if writes or matrix.postgres_skipped:
        title = (
            f"## (w) The cost of a write: {config.write_mutations} `createStatusChange`"
            f" mutations, {config.write_concurrency} in flight, no subscribers"
        )
        parts += ["", title, "", writes, "", *write_notes(matrix, config)]
    if any(r.churn is None and r.presence is None for r in matrix.records):
        parts += ["", "## Every phase", "", details_table(matrix)]
    parts += ["", "## Findings", ""]
    notes = findings(matrix) + write_findings(matrix)
    parts += [f"- {note}" for note in notes] if notes else ["- none: no loss, no errors"]
    parts += ["", "See bench/README.md for what each number means."]
    return "\n".join(parts) + "\n"


# Command line ------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def _words(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_config(argv: list[str]) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(description="Pulse fan-out benchmark matrix.")
    parser.add_argument("--quick", action="store_true", help="a small smoke run for CI")
    parser.add_argument("--subscribers", help="SMALL,LARGE (default 1000,10000; quick 20,50)")
    parser.add_argument("--events", type=int, help="events per back-to-back phase (60; quick 5)")
    parser.add_argument("--rate-events", type=int, help="events in scenario c (30; quick 3)")
    parser.add_argument("--rate", type=float, help="events per second in scenario c (1)")
    parser.add_argument("--mutations", type=int, help="mutations in scenario e (1000; quick 40)")
    parser.add_argument("--mutation-concurrency", type=int, default=20)
    parser.add_argument("--churn-cycles", type=int, help="cycles in scenario f (500; quick 30)")
    parser.add_argument(
        "--churn-concurrency", type=int, help="cycles in flight in scenario f (20; quick 5)"
    )
    parser.add_argument(
        "--churn-replay", type=int, default=20, help="activities each Pulse cycle replays (20)"
    )
    parser.add_argument(
        "--watchers", type=int, help="scenario g: users mentioned and subscribed (20; quick 3)"
    )
    parser.add_argument(
        "--watcher-shapes",
        default="shared,own",
        help="scenario g, once per value: shared (every watcher sends the same document,"
        " as clients do) and/or own (each its own named operation: one shape each)",
    )
    parser.add_argument(
        "--presence-online", help="scenario h: users online, one run each (10,1000; quick 2,5)"
    )
    parser.add_argument(
        "--presence-cycles", type=int, help="scenario h: cycles per run (1000; quick 20)"
    )
    parser.add_argument(
        "--presence-concurrency", type=int, default=1, help="scenario h: cycles in flight (1)"
    )
    parser.add_argument(
        "--write-mutations", type=int, help="scenario w: measured mutations (400; quick 20)"
    )
    parser.add_argument(
        "--write-warmup", type=int, help="scenario w: warm-up mutations, not measured (50; quick 5)"
    )
    parser.add_argument(
        "--write-concurrency", type=int, default=20, help="scenario w: mutations in flight (20)"
    )
    parser.add_argument(
        "--write-databases",
        default=",".join(DATABASES),
        help="scenario w: sqlite and/or postgres (both)",
    )
    parser.add_argument(
        "--write-commands",
        help="scenario w: how Pulse is served, backend.server and/or daphne"
        " (both; quick backend.server)",
    )
    parser.add_argument("--servers", help="comma-separated: " + ",".join(k.key for k in SERVERS))
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="subset of " + ",".join(SCENARIOS)
    )
    parser.add_argument("--open-concurrency", type=int, default=50)
    parser.add_argument("--stall-seconds", type=float, help="drain ends after this long idle")
    parser.add_argument("--drain-cap", type=float, default=300.0, help="drain ends after this")
    parser.add_argument(
        "--publish-cap", type=float, default=300.0, help="a phase stops publishing after this"
    )
    parser.add_argument("--output", type=Path, help="Markdown report (default bench/results.md)")
    parser.add_argument("--strict", action="store_true", help="exit 1 on any loss or error")
    args = parser.parse_args(argv)
    quick = args.quick
    small, large = (
        _ints(args.subscribers) if args.subscribers else ([20, 50] if quick else [1000, 10000])
    )
    every = [k.key for k in SERVERS]
    # --quick: one SSE server is enough to smoke-test the transport (the layer is the
    # same code as over WebSockets).
    chosen = args.servers.split(",") if args.servers else [*(QUICK_SERVERS if quick else every)]
    unknown = set(chosen) - {k.key for k in SERVERS}
    if unknown:
        parser.error(f"unknown servers: {sorted(unknown)}")
    scenarios = frozenset(s.strip() for s in args.scenarios.split(",") if s.strip())
    if scenarios - set(SCENARIOS):
        parser.error("scenarios are a subset of " + ",".join(SCENARIOS))
    watchers = args.watchers or (3 if quick else 20)
    mentions = sum(len(f" @w{number}") for number in range(watchers))
    if watchers < 1 or TAG_MAX + mentions > STATUS_MAX:
        parser.error(f"--watchers: at least 1, and their mentions must fit in {STATUS_MAX} chars")
    watcher_shapes = tuple(v.strip() for v in args.watcher_shapes.split(",") if v.strip())
    if not watcher_shapes or set(watcher_shapes) - {"shared", "own"}:
        parser.error("--watcher-shapes is shared, own or shared,own")
    presence_online = tuple(
        _ints(args.presence_online) if args.presence_online else ([2, 5] if quick else [10, 1000])
    )
    databases = _words(args.write_databases)
    if not databases or set(databases) - set(DATABASES):
        parser.error("--write-databases is sqlite, postgres or sqlite,postgres")
    # --quick: Pulse under backend.server only (plain daphne serves the same application).
    commands = _words(args.write_commands or ("backend.server" if quick else ",".join(COMMANDS)))
    if not commands or set(commands) - set(COMMANDS):
        parser.error("--write-commands is backend.server, daphne or backend.server,daphne")
    write_mutations = args.write_mutations or (20 if quick else 400)
    write_warmup = args.write_warmup if args.write_warmup is not None else (5 if quick else 50)
    if write_mutations < 1 or write_warmup < 0 or args.write_concurrency < 1:
        parser.error("--write-mutations and --write-concurrency: at least 1; --write-warmup: 0+")
    limits = Limits(
        open_concurrency=args.open_concurrency,
        stall_seconds=args.stall_seconds or (10.0 if quick else 30.0),
        drain_cap_seconds=args.drain_cap,
        publish_cap_seconds=args.publish_cap,
    )
    config = Config(
        small=small,
        large=large,
        events=args.events or (5 if quick else 60),
        rate_events=args.rate_events or (3 if quick else 30),
        rate=args.rate or (4.0 if quick else 1.0),
        mutations=args.mutations or (40 if quick else 1000),
        mutation_concurrency=args.mutation_concurrency,
        churn_cycles=args.churn_cycles or (30 if quick else 500),
        churn_concurrency=args.churn_concurrency or (5 if quick else 20),
        churn_replay=args.churn_replay,
        scenarios=scenarios,
        servers=tuple(k for k in SERVERS if k.key in chosen),
        limits=limits,
        watchers=watchers,
        watcher_shapes=watcher_shapes,
        presence_online=presence_online,
        presence_cycles=args.presence_cycles or (20 if quick else 1000),
        presence_concurrency=args.presence_concurrency,
        write_mutations=write_mutations,
        write_warmup=write_warmup,
        write_concurrency=args.write_concurrency,
        write_databases=cast(tuple[Database, ...], databases),
        write_commands=cast(tuple[Command, ...], commands),
    )
    if args.output is None:
        args.output = ROOT / "bench" / ("results-quick.md" if quick else "results.md")
    args.strict = args.strict or quick
    return config, args


def _clean(matrix: Matrix) -> bool:
    """No failed session, no loss, no error anywhere."""
    for write in matrix.writes:
        if write.error or write.log_issues_during_run[0] or write.result is None:
            return False
        if write.result.failed or write.result.warmup_failed:
            return False
        if write.result.stored != write.result.ok + write.result.warmup_ok:
            return False
    for record in matrix.records:
        if record.error or record.log_issues_during_run[0]:
            return False
        if record.churn is not None:
            churn = record.churn
            if churn.failures or churn.cycles_ok < churn.cycles_planned:
                return False
            continue
        if record.presence is not None:
            if _presence_findings("", record.presence):
                return False
            continue
        session = record.result
        if session is None:
            return False
        if session.open_failures or session.closed_by_server:
            return False
        if session.watchers_opened < session.watchers_wanted:
            return False
        for phase in session.phases:
            if phase.delivered < phase.expected or phase.duplicates or phase.errors:
                return False
            if phase.notes_delivered < phase.notes_expected or phase.notes_duplicates:
                return False
            if phase.publish_errors:
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config, args = parse_config(argv)
    raise_nofile_limit(NOFILE)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds through every finally: servers get stopped

    signal.signal(signal.SIGTERM, on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="pulse-bench."))

    def progress(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)

    progress(f"logs in {workdir}")
    began, revision = time.monotonic(), _revision() + " when the run began"
    matrix = run_matrix(config, workdir, progress)
    text = report(matrix, config, argv, workdir, time.monotonic() - began, revision)
    print(text)
    args.output.write_text(text)
    raw = [
        {
            "server": r.server.key,
            "session": r.session,
            "error": r.error,
            "log": r.log_path,
            "log_issues_during_run": r.log_issues_during_run,
            "log_issues_at_shutdown": r.log_issues_at_shutdown,
            "result": session_as_dict(r.result) if r.result else None,
            "churn": dataclasses.asdict(r.churn) if r.churn else None,
            "presence": dataclasses.asdict(r.presence) if r.presence else None,
        }
        for r in matrix.records
    ]
    raw += [
        {
            "server": w.server.key,
            "session": "w",
            "error": w.error,
            "log": w.log_path,
            "log_issues_during_run": w.log_issues_during_run,
            "log_issues_at_shutdown": w.log_issues_at_shutdown,
            "write": (
                dataclasses.asdict(w.result)
                | {
                    "mutations_per_second": w.result.mutations_per_second,
                    "cpu_ms_per_mutation": w.result.cpu_ms_per_mutation,
                    "database_cpu_ms_per_mutation": w.result.database_cpu_ms_per_mutation,
                }
                if w.result
                else None
            ),
        }
        for w in matrix.writes
    ]
    if matrix.postgres_skipped:
        raw.append({"session": "w", "postgres_skipped": matrix.postgres_skipped})
    args.output.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n")
    progress(f"wrote {args.output} and {args.output.with_suffix('.json')}")
    return 1 if args.strict and not _clean(matrix) else 0


if __name__ == "__main__":
    sys.exit(main())
