"""Scenario (w): the cost of a write.

One fresh server process on a fresh database takes a burst of ``createStatusChange``
mutations over HTTP, ``concurrency`` in flight, with no subscriber: first a warm-up
burst that is not measured, then the measured one. Measured: mutations per second
(succeeded ÷ the measured burst's wall time, first send to last answer), request
latency p50 / p99, the server process's CPU (utime + stime, every thread) over the
burst ÷ the mutations that succeeded, and, on PostgreSQL, the CPU of the database
cluster's processes over the same window. The bursts are sent from their own client
process (as in scenario (e)), so the load generator's loop adds nothing to a request.

The servers (``bench/run.py`` starts them): the stock strawberry + Channels pattern
with storage (``bench/stock_app.py`` with ``STOCK_DATABASE_URL``: ``acreate``, then
``post_save`` → ``on_commit`` → ``group_send``) under daphne, and Pulse under
``python -m backend.server`` and under plain ``daphne``; on SQLite and on PostgreSQL,
with the channels-redis pub/sub layer or the in-memory one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.loadgen import (
    BurstResult,
    PhasePlan,
    Target,
    _burst_process,
    _ms,
    mutation_burst,
    process_cpu_seconds,
)

App = Literal["stock", "pulse"]
Database = Literal["sqlite", "postgres"]
Command = Literal["backend.server", "daphne"]
DATABASES: tuple[Database, ...] = ("sqlite", "postgres")
COMMANDS: tuple[Command, ...] = ("backend.server", "daphne")


@dataclass(frozen=True)
class WriteServer:
    """One row of (w): which app, under which command, on which database and layer."""

    app: App
    database: Database
    redis: bool
    command: Command = "daphne"

    @property
    def key(self) -> str:
        layer = "redis" if self.redis else "memory"
        suffix = "-daphne" if self.app == "pulse" and self.command == "daphne" else ""
        return f"{self.app}-{layer}-{self.database}{suffix}"

    @property
    def label(self) -> str:
        return "stock strawberry + Channels" if self.app == "stock" else "Pulse"

    @property
    def table(self) -> str:
        """Where each of its mutations stores a row."""
        return "bench_status" if self.app == "stock" else "events_statuschange"

    @property
    def layer(self) -> str:
        return "redis pubsub" if self.redis else "in-memory"

    @property
    def command_line(self) -> str:
        if self.app == "stock":
            return "daphne bench.stock_app:application"
        if self.command == "daphne":
            return "daphne asgi:application"
        return "python -m backend.server asgi:application"


def write_servers(
    layers: dict[App, tuple[bool, ...]],
    databases: tuple[Database, ...],
    commands: tuple[Command, ...],
) -> list[WriteServer]:
    """The rows, grouped by database and layer so each Pulse row runs right after the
    stock row it is compared with. ``layers``: per app, the chosen ones (redis or not)."""
    servers = []
    for database in databases:
        for redis in (True, False):
            if redis in layers.get("stock", ()):
                servers.append(WriteServer("stock", database, redis))
            if redis in layers.get("pulse", ()):
                servers += [WriteServer("pulse", database, redis, c) for c in commands]
    return servers


@dataclass(frozen=True)
class WritePlan:
    mutations: int
    warmup: int
    concurrency: int
    request_timeout: float = 120.0
    cap_seconds: float = 300.0  # each burst stops sending after this
    settle_seconds: float = 0.25  # after the last answer, before the CPU is read again


@dataclass
class WriteResult:
    """What one (w) session measured (times in ms unless named otherwise)."""

    server: str
    app: str
    database: str
    layer: str
    command: str
    planned: int
    concurrency: int
    warmup_planned: int
    warmup_ok: int
    warmup_failed: int
    ok: int
    failed: int  # errors, timeouts, and mutations not sent within the cap
    failure_samples: list[str]
    seconds: float  # the measured burst: first send to last answer
    server_cpu_seconds: float | None
    database_cpu_seconds: float | None  # PostgreSQL's processes; None on SQLite
    client_cpu_seconds: float
    window_seconds: float  # from the first CPU reading to the last
    other_cpu_seconds: float  # the machine's busy time in the window, minus all of the above
    request_p50_ms: float | None
    request_p99_ms: float | None
    request_max_ms: float | None
    failures: dict[str, int] = field(default_factory=dict)
    stored: int | None = None  # rows in the server's table afterwards (warm-up included)

    @property
    def mutations_per_second(self) -> float | None:
        return self.ok / self.seconds if self.ok and self.seconds > 0 else None

    @property
    def cpu_ms_per_mutation(self) -> float | None:
        if self.server_cpu_seconds is None or not self.ok:
            return None
        return self.server_cpu_seconds * 1e3 / self.ok

    @property
    def database_cpu_ms_per_mutation(self) -> float | None:
        if self.database_cpu_seconds is None or not self.ok:
            return None
        return self.database_cpu_seconds * 1e3 / self.ok


def stored_rows(database_url: str, table: str) -> int | None:
    """How many rows ``table`` holds in the database of ``database_url`` (None if that
    cannot be read): every acknowledged mutation must have stored one."""
    with contextlib.suppress(Exception):
        if database_url.startswith("sqlite:///"):
            path = database_url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
        import psycopg

        with psycopg.connect(database_url) as connection:
            row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
            return int(row[0]) if row else None
    return None


def machine_busy_seconds() -> float:
    """CPU time every core of the machine has spent busy (``/proc/stat``), in seconds."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_burst(
    target: Target, plan: PhasePlan, timeout: float, cap: float
) -> tuple[BurstResult, float, float]:
    """In the burst process: the burst, its wall time and this process's CPU for it."""
    cpu, began = _own_cpu_seconds(), time.perf_counter()
    result = mutation_burst(target, plan, timeout, cap)
    return result, time.perf_counter() - began, _own_cpu_seconds() - cpu


# PostgreSQL's CPU ----------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def find_postmaster(port: int) -> int | None:
    """The pid of the postgres server listening on ``port`` (started with ``-p PORT``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if not argv[0].endswith(b"postgres"):
                continue
            for flag, value in itertools.pairwise(argv):
                if flag == b"-p" and value == str(port).encode():
                    return int(entry.name)
    return None


def cluster_cpu_seconds(postmaster: int) -> float:
    """CPU of a PostgreSQL cluster: the postmaster, its live children, and (through the
    postmaster's cutime/cstime) every child it has reaped, such as the backend of a
    connection that closed."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = _stat_fields(postmaster)
    total = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == str(postmaster):
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            child = _stat_fields(int(entry.name))
            if int(child[1]) == postmaster:  # ppid
                total += sum(int(v) for v in child[11:15])
    return total / ticks


# The session ---------------------------------------------------------------------------


def run_writes(
    server: WriteServer,
    target: Target,
    plan: WritePlan,
    server_pid: int,
    postmaster: int | None = None,
) -> WriteResult:
    """The warm-up burst, then the measured one, from a fresh client process."""
    with _burst_process() as pool:
        warm, _, _ = pool.submit(
            timed_burst,
            target,
            PhasePlan("wwarm", plan.warmup, "mutations", concurrency=plan.concurrency),
            plan.request_timeout,
            plan.cap_seconds,
        ).result(timeout=plan.cap_seconds + plan.request_timeout + 60)
        time.sleep(plan.settle_seconds)
        measured = PhasePlan("w", plan.mutations, "mutations", concurrency=plan.concurrency)
        machine, own, window = machine_busy_seconds(), _own_cpu_seconds(), time.monotonic()
        cpu = process_cpu_seconds(server_pid)
        database = cluster_cpu_seconds(postmaster) if postmaster else None
        burst, seconds, client = pool.submit(
            timed_burst, target, measured, plan.request_timeout, plan.cap_seconds
        ).result(timeout=plan.cap_seconds + plan.request_timeout + 60)
        time.sleep(plan.settle_seconds)
        cpu = process_cpu_seconds(server_pid) - cpu
        if postmaster and database is not None:
            database = cluster_cpu_seconds(postmaster) - database
        window = time.monotonic() - window
        machine = machine_busy_seconds() - machine
        own = _own_cpu_seconds() - own
    # Whatever else ran on the machine meanwhile (the bench's redis-server included).
    others = max(0.0, machine - cpu - client - own - (database or 0.0))
    failures = dict(burst.errors)
    unsent = plan.mutations - len(burst.acked) - sum(failures.values())
    if unsent > 0:
        failures[f"not sent or not answered within the {plan.cap_seconds:g}s cap"] = unsent
    p50, p99, worst = _ms(burst.request_ns)
    warm_failed = plan.warmup - len(warm.acked)
    return WriteResult(
        server=server.key,
        app=server.app,
        database=server.database,
        layer=server.layer,
        command=server.command_line,
        planned=plan.mutations,
        concurrency=plan.concurrency,
        warmup_planned=plan.warmup,
        warmup_ok=len(warm.acked),
        warmup_failed=warm_failed,
        ok=len(burst.acked),
        failed=sum(failures.values()),
        failure_samples=list(failures)[:5],
        seconds=seconds,
        server_cpu_seconds=cpu,
        database_cpu_seconds=database,
        client_cpu_seconds=client,
        window_seconds=window,
        other_cpu_seconds=others,
        request_p50_ms=p50,
        request_p99_ms=p99,
        request_max_ms=worst,
        failures=failures,
    )
