"""Cached user stats across two processes sharing Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis import Redis

from tests.e2e.clients import ahttp_gql, sign_up
from tests.e2e.servers import daphne_server, new_database

pytestmark = pytest.mark.e2e

ME = "{ me { id } }"
STATS = "query($id: ID!) { user(id: $id) { stats { statusCount commentCount } } }"
POST = "mutation($s: String!) { createStatusChange(input: {status: $s}) { id } }"


async def test_a_read_after_a_write_on_another_process_is_never_stale(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    database = new_database(postgres_url, f"pulse_stats_{time.monotonic_ns()}", tmp_path)
    env = {"REDIS_URL": redis_url}
    with daphne_server(tmp_path, database, env) as a, daphne_server(tmp_path, database, env) as b:
        token = await asyncio.to_thread(sign_up, a.base, "counted")
        user_id = (await ahttp_gql(a.base, ME, None, token))["data"]["me"]["id"]

        async def stats_on(base: str) -> int:
            body = await ahttp_gql(base, STATS, {"id": user_id})
            count: int = body["data"]["user"]["stats"]["statusCount"]
            return count

        for n in range(1, 6):
            await stats_on(a.base)  # cached by process a
            await stats_on(b.base)
            assert "errors" not in await ahttp_gql(b.base, POST, {"s": f"#{n}"}, token)
            assert await stats_on(a.base) == 2 * n - 1  # written through b, read through a at once
            assert "errors" not in await ahttp_gql(a.base, POST, {"s": f"a#{n}"}, token)
            assert await stats_on(b.base) == 2 * n  # and the other way round


async def test_writes_share_the_process_redis_connections(tmp_path: Path, redis_url: str) -> None:
    """Django builds a cache client per request under ASGI; the shared pool
    (``backend.redis_pool``) keeps each write's stats invalidation from opening a new
    connection to Redis."""
    redis = Redis.from_url(redis_url)
    with daphne_server(tmp_path, env={"REDIS_URL": redis_url}) as server:
        token = await asyncio.to_thread(sign_up, server.base, "pooled")
        await ahttp_gql(server.base, POST, {"s": "warm"}, token)
        before = redis.info("stats")["total_connections_received"]
        for n in range(40):
            assert "errors" not in await ahttp_gql(server.base, POST, {"s": f"#{n}"}, token)
        opened = redis.info("stats")["total_connections_received"] - before
    redis.close()
    assert opened <= 3, f"40 writes opened {opened} Redis connections"
