"""Delivery you can trust: many processes, concurrent writers, and faults.

Real daphne processes, a real redis-server and a real PostgreSQL cluster (the suite's
own when it runs on PostgreSQL, else a throwaway one), all on loopback.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.clients import (
    TRANSPORT_WS,
    WSClient,
    ahttp_gql,
    sign_up,
    subscriptions_active,
    until_subscribed,
)
from tests.e2e.servers import ROOT, DaphneServer, RedisServer, daphne_server, new_database

pytestmark = pytest.mark.e2e

ACTIVITY = "subscription($after: String) { activity(after: $after) { cursor kind message } }"
POST = "mutation($s: String!) { createStatusChange(input: {status: $s}) { id } }"
LOG = "query($a: String) { activities(after: $a, first: 100) { cursor } }"


async def log_after(base: str, cursor: str | None) -> list[str]:
    """Every cursor of the (public) log after ``cursor``, paging through it."""
    cursors: list[str] = []
    while True:
        page = (await ahttp_gql(base, LOG, {"a": cursor}))["data"]["activities"]
        cursors += [a["cursor"] for a in page]
        if len(page) < 100:
            return cursors
        cursor = page[-1]["cursor"]


async def last_cursor(base: str) -> str | None:
    cursors = await log_after(base, None)
    return cursors[-1] if cursors else None


async def receive(socket: WSClient, count: int, timeout: float = 20) -> list[dict]:
    return [(await socket.next_data(timeout))["activity"] for _ in range(count)]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may stop and start."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_two_processes_share_redis_and_database(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    database = new_database(postgres_url, f"pulse_two_{time.monotonic_ns()}", tmp_path)
    env = {"REDIS_URL": redis_url}
    with daphne_server(tmp_path, database, env) as a, daphne_server(tmp_path, database, env) as b:
        tokens = [await asyncio.to_thread(sign_up, a.base, "writer_a")]
        tokens.append(await asyncio.to_thread(sign_up, b.base, "writer_b"))
        start = await last_cursor(a.base)
        on_a = await WSClient.open(a.base, TRANSPORT_WS)
        on_b = await WSClient.open(b.base, TRANSPORT_WS)
        for socket in (on_a, on_b):
            await socket.subscribe("1", ACTIVITY, {"after": start})

        writes = [
            ahttp_gql(server.base, POST, {"s": f"via {server.port} #{n}"}, token)
            for n in range(10)
            for server, token in ((a, tokens[0]), (b, tokens[1]))
        ]
        results = await asyncio.gather(*writes)
        assert all("errors" not in r for r in results)

        expected = await log_after(a.base, start)
        assert len(expected) == 20
        for socket in (on_a, on_b):
            assert [x["cursor"] for x in await receive(socket, 20)] == expected
            assert await socket.nothing_within(0.5)
            await socket.close()


async def test_resuming_under_concurrent_writers_misses_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    database = new_database(postgres_url, f"pulse_conc_{time.monotonic_ns()}", tmp_path)
    with daphne_server(tmp_path, database) as server:
        tokens = [await asyncio.to_thread(sign_up, server.base, f"w{n}") for n in range(20)]
        start = await last_cursor(server.base)
        posts_per_writer = 10

        async def writer(token: str) -> None:
            for n in range(posts_per_writer):
                body = await ahttp_gql(server.base, POST, {"s": f"#{n}"}, token)
                assert "errors" not in body, body

        writers = asyncio.gather(*(writer(token) for token in tokens))
        received: list[str] = []
        cursor, rng = start, random.Random(20261125)
        deadline = time.monotonic() + 60
        while len(received) < len(tokens) * posts_per_writer and time.monotonic() < deadline:
            socket = await WSClient.open(server.base, TRANSPORT_WS)
            await socket.subscribe("resume", ACTIVITY, {"after": cursor})
            for _ in range(rng.randint(1, 25)):
                try:
                    activity = (await socket.next_data(timeout=5))["activity"]
                except TimeoutError:
                    break
                received.append(activity["cursor"])
                cursor = activity["cursor"]
            await socket.close()  # drop at a random moment, resume from the last cursor
        await writers

        assert received == await log_after(server.base, start)
        assert len(received) == len(set(received)) == 200


async def test_redis_outage_loses_nothing_and_recovers_without_restart(
    tmp_path: Path, redis: RedisServer
) -> None:
    with daphne_server(tmp_path, env={"REDIS_URL": redis.url}) as server:
        token = await asyncio.to_thread(sign_up, server.base, "outage")
        start = await last_cursor(server.base)
        live = await WSClient.open(server.base, TRANSPORT_WS)
        await live.subscribe("live", ACTIVITY, {"after": start})
        await ahttp_gql(server.base, POST, {"s": "before"}, token)
        assert [a["message"] for a in await receive(live, 1)] == [
            "outage changed status to 'before'"
        ]

        redis.stop()
        during = [await ahttp_gql(server.base, POST, {"s": f"during {n}"}, token) for n in range(3)]
        assert all(body["data"]["createStatusChange"]["id"] for body in during)
        status, readiness = await asyncio.to_thread(_get_json, server.base + "/readyz")
        assert status == 503
        assert readiness["checks"] == {"database": "ok", "channel_layer": "unavailable"}

        redis.start()
        restarted = time.monotonic()
        await ahttp_gql(server.base, POST, {"s": "after"}, token)
        messages = [a["message"] for a in await receive(live, 4, timeout=30)]
        recovery = time.monotonic() - restarted
        assert messages == [
            "outage changed status to 'during 0'",
            "outage changed status to 'during 1'",
            "outage changed status to 'during 2'",
            "outage changed status to 'after'",
        ]
        print(f"redis outage: live delivery complete {recovery:.2f}s after redis returned")
        status, _ = await asyncio.to_thread(_get_json, server.base + "/readyz")
        assert status == 200

        resumed = await WSClient.open(server.base, TRANSPORT_WS)
        await resumed.subscribe("resume", ACTIVITY, {"after": start})
        assert [a["cursor"] for a in await receive(resumed, 5)] == await log_after(
            server.base, start
        )
        await live.close()
        await resumed.close()


async def test_fixtures_and_rollbacks_publish_nothing_over_redis(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    database = new_database(postgres_url, f"pulse_raw_{time.monotonic_ns()}", tmp_path)
    with daphne_server(tmp_path, database, {"REDIS_URL": redis_url}) as server:
        token = await asyncio.to_thread(sign_up, server.base, "raw")
        live = await WSClient.open(server.base, TRANSPORT_WS)
        active = await subscriptions_active(server.base)
        await live.subscribe("live", ACTIVITY)
        await until_subscribed(server.base, active + 1)

        await asyncio.to_thread(_loaddata, server)
        rejected = await ahttp_gql(server.base, POST, {"s": "x" * 300}, token)  # rolled back
        assert rejected["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        await ahttp_gql(server.base, POST, {"s": "real"}, token)

        assert [a["message"] for a in await receive(live, 1)] == ["raw changed status to 'real'"]
        assert await live.nothing_within(0.5)
        await live.close()


def _loaddata(server: DaphneServer) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "loaddata", "tests/fixtures/users_and_events.json", "-v0"],
        cwd=ROOT,
        env=server.env,
        check=True,
    )


def _get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
