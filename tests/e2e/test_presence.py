"""Presence through real daphne processes: login and logout, sockets on two processes,
a process killed with SIGKILL, and a Redis outage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
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
from tests.e2e.servers import daphne_server, new_database, redis_server

pytestmark = pytest.mark.e2e

PRESENCE = "subscription { presence { online lastSeenAt user { username online } } }"
ONLINE = "{ onlineUsers { username online lastSeenAt } }"
LOGOUT = "mutation { logout }"
POST = "mutation($s: String!) { createStatusChange(input: {status: $s}) { id } }"
ACTIVITY = "subscription { activity { message } }"


class Watcher:
    """A signed-in ``presence`` subscriber that keeps the transitions of some users."""

    def __init__(self, client: WSClient, usernames: set[str]) -> None:
        self.client, self.usernames = client, usernames

    @classmethod
    async def open(cls, base: str, token: str, usernames: set[str]) -> Watcher:
        client = await WSClient.open(base, TRANSPORT_WS, token)
        active = await subscriptions_active(base)
        await client.subscribe("presence", PRESENCE)
        await until_subscribed(base, active + 1)  # subscribed before what it watches
        return cls(client, usernames)

    async def next(self, timeout: float = 10) -> tuple[str, bool]:
        """The next transition of a watched user."""
        async with asyncio.timeout(timeout):
            while True:
                found = (await self.client.next_data(timeout))["presence"]
                if found["user"]["username"] in self.usernames:
                    return found["user"]["username"], found["online"]

    async def none_within(self, seconds: float) -> bool:
        try:
            found = await self.next(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected transition {found}")


async def online_names(base: str, token: str) -> set[str]:
    body = await ahttp_gql(base, ONLINE, None, token)
    assert "errors" not in body, body
    return {user["username"] for user in body["data"]["onlineUsers"]}


def stamp() -> str:
    return str(time.monotonic_ns() % 10**9)


async def test_login_makes_online_and_logout_offline(server: str) -> None:
    s = stamp()
    watcher_token = await asyncio.to_thread(sign_up, server, f"watcher{s}")
    watcher = await Watcher.open(server, watcher_token, {f"bob{s}"})
    bob_token = await asyncio.to_thread(sign_up, server, f"bob{s}")  # signs in
    assert await watcher.next() == (f"bob{s}", True)
    assert f"bob{s}" in await online_names(server, watcher_token)
    assert "errors" not in await ahttp_gql(server, LOGOUT, None, bob_token)
    assert await watcher.next() == (f"bob{s}", False)
    assert f"bob{s}" not in await online_names(server, watcher_token)
    await watcher.client.close()


async def test_anonymous_viewers_get_no_presence(server: str) -> None:
    body = await ahttp_gql(server, ONLINE)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
    users = await ahttp_gql(server, "{ users(first: 5) { edges { node { online lastSeenAt } } } }")
    assert all(
        edge["node"] == {"online": False, "lastSeenAt": None}
        for edge in users["data"]["users"]["edges"]
    )
    client = await WSClient.open(server, TRANSPORT_WS)
    await client.subscribe("1", PRESENCE)
    message = json.loads(await asyncio.wait_for(client.ws.recv(), 10))
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"]
    await client.close()


async def test_sockets_on_two_processes_make_one_transition_each_way(
    tmp_path: Path, postgres_url: str
) -> None:
    database = new_database(postgres_url, f"pulse_presence_{time.monotonic_ns()}", tmp_path)
    with contextlib.ExitStack() as stack:
        # Its own Redis: presence is keyed by user id, and ids are per database.
        redis = stack.enter_context(redis_server(tmp_path))
        env = {"REDIS_URL": redis.url, "PULSE_PRESENCE_TIMEOUT_SECONDS": "2"}
        a = stack.enter_context(daphne_server(tmp_path, database, env))
        b = stack.enter_context(daphne_server(tmp_path, database, env))
        watcher_token = await asyncio.to_thread(sign_up, b.base, "watcher")
        watcher = await Watcher.open(b.base, watcher_token, {"bob"})
        bob_token = await asyncio.to_thread(sign_up, a.base, "bob")
        assert await watcher.next() == ("bob", True)  # signed in
        assert await watcher.next() == ("bob", False)  # the sign-in timed out
        assert "bob" not in await online_names(b.base, watcher_token)
        on_a = await WSClient.open(a.base, TRANSPORT_WS, bob_token)
        assert await watcher.next() == ("bob", True)
        on_b = await WSClient.open(b.base, TRANSPORT_WS, bob_token)
        await on_a.close()
        assert await watcher.none_within(3)  # still on b, past the timeout (refreshed)
        assert "bob" in await online_names(a.base, watcher_token)
        await on_b.close()
        assert await watcher.next() == ("bob", False)
        assert await watcher.none_within(1)
        await watcher.client.close()


async def test_the_users_of_a_killed_process_go_offline_within_the_timeout(
    tmp_path: Path, postgres_url: str
) -> None:
    database = new_database(postgres_url, f"pulse_presence_{time.monotonic_ns()}", tmp_path)
    with contextlib.ExitStack() as stack:
        # Its own Redis: presence is keyed by user id, and ids are per database.
        redis = stack.enter_context(redis_server(tmp_path))
        env = {"REDIS_URL": redis.url, "PULSE_PRESENCE_TIMEOUT_SECONDS": "2"}
        a = stack.enter_context(daphne_server(tmp_path, database, env))
        b = stack.enter_context(daphne_server(tmp_path, database, env))
        watcher_token = await asyncio.to_thread(sign_up, b.base, "watcher2")
        watcher = await Watcher.open(b.base, watcher_token, {"bob2"})
        bob_token = await asyncio.to_thread(sign_up, a.base, "bob2")
        assert await watcher.next() == ("bob2", True)  # signed in
        assert await watcher.next() == ("bob2", False)  # the sign-in timed out
        on_a = await WSClient.open(a.base, TRANSPORT_WS, bob_token)
        assert await watcher.next() == ("bob2", True)
        killed_at = time.monotonic()
        a.stop(signal.SIGKILL)
        assert await watcher.next(timeout=10) == ("bob2", False)
        assert time.monotonic() - killed_at < 2 + 2  # the timeout and one sweep period
        assert "bob2" not in await online_names(b.base, watcher_token)
        del on_a
        await watcher.client.close()


async def test_a_redis_outage_degrades_presence_only_and_it_recovers(
    tmp_path: Path, postgres_url: str
) -> None:
    database = new_database(postgres_url, f"pulse_presence_{time.monotonic_ns()}", tmp_path)
    with redis_server(tmp_path) as redis:
        env = {"REDIS_URL": redis.url, "PULSE_PRESENCE_TIMEOUT_SECONDS": "2"}
        with (
            daphne_server(tmp_path, database, env) as a,
            daphne_server(tmp_path, database, env) as b,
        ):
            carol_token = await asyncio.to_thread(sign_up, a.base, "carol")
            dave_token = await asyncio.to_thread(sign_up, b.base, "dave")
            feed = await WSClient.open(a.base, TRANSPORT_WS, carol_token)
            active = await subscriptions_active(a.base)
            await feed.subscribe("1", ACTIVITY)
            await until_subscribed(a.base, active + 1)
            assert "errors" not in await ahttp_gql(a.base, POST, {"s": "before"}, carol_token)
            assert (await feed.next_data())["activity"]["message"].endswith("'before'")
            redis.stop()
            dave = await WSClient.open(b.base, TRANSPORT_WS, dave_token)  # during the outage
            # Nothing else breaks: a write goes through and reaches the live feed (the
            # listener's read of the log is the safety net for the lost doorbell).
            assert "errors" not in await ahttp_gql(a.base, POST, {"s": "in the dark"}, carol_token)
            assert (await feed.next_data(timeout=15))["activity"]["message"].endswith(
                "'in the dark'"
            )
            assert "dave" in await online_names(b.base, dave_token)  # b's own view
            redis.start()  # the same port
            deadline = time.monotonic() + 15
            while "dave" not in await online_names(a.base, carol_token):
                assert time.monotonic() < deadline, "presence did not recover"
                await asyncio.sleep(0.2)
            await dave.close()
            await feed.close()
