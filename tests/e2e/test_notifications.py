"""Notifications through real daphne processes: the inbox live on every transport, the
unread badge agreeing across tabs and across processes sharing Redis."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.clients import (
    TRANSPORT_WS,
    WSClient,
    ahttp_gql,
    event_stream,
    sign_up,
    subscriptions_active,
    until_subscribed,
)
from tests.e2e.servers import daphne_server, new_database

pytestmark = pytest.mark.e2e

LIVE = """subscription($after: String) { notifications(after: $after) {
  unreadCount notification { cursor kind activity { message actor { username } } } } }"""
POST = "mutation($s: String!) { createStatusChange(input: {status: $s}) { id } }"
MARK = "mutation($upTo: String) { markNotificationsRead(upTo: $upTo) }"
INBOX = "{ notifications { edges { node { cursor kind } } } unreadNotificationCount }"


def update(data: dict[str, Any]) -> tuple[int, str | None]:
    found = data["notifications"]
    return found["unreadCount"], (found["notification"] or {}).get("kind")


async def sse_update(stream: Any) -> tuple[int, str | None]:
    return update((await stream.next_data()).data["data"])


async def test_the_badge_follows_on_every_tab_and_transport(server: str) -> None:
    stamp = time.monotonic_ns() % 10**9
    alice, bob, cy = (f"{name}{stamp}" for name in ("alice", "bob", "cy"))
    alice_token, bob_token, cy_token = await asyncio.gather(
        *(asyncio.to_thread(sign_up, server, name) for name in (alice, bob, cy))
    )
    auth = {"Authorization": f"Bearer {bob_token}"}
    tab1 = await WSClient.open(server, TRANSPORT_WS, bob_token)
    others = await WSClient.open(server, TRANSPORT_WS, cy_token)
    active = await subscriptions_active(server)
    async with event_stream(server, "POST", json={"query": LIVE}, headers=auth) as tab2:
        await tab1.subscribe("1", LIVE)
        await others.subscribe("1", LIVE)
        await until_subscribed(server, active + 3)  # all three before the write (no replay)
        await ahttp_gql(server, POST, {"s": f"ping @{bob}"}, alice_token)
        assert update(await tab1.next_data()) == (1, "MENTION")
        assert await sse_update(tab2) == (1, "MENTION")
        marked = await ahttp_gql(server, MARK, {}, bob_token)
        assert marked["data"]["markNotificationsRead"] == 0
        assert update(await tab1.next_data()) == (0, None)  # read elsewhere: count only
        assert await sse_update(tab2) == (0, None)
        assert await others.nothing_within(0.5)  # nobody sees bob's notifications
        await ahttp_gql(server, POST, {"s": f"and @{cy}"}, alice_token)  # her own, live
        assert update(await others.next_data()) == (1, "MENTION")
    await tab1.close()
    await others.close()


async def test_a_resumed_subscription_replays_after_its_cursor(server: str) -> None:
    stamp = time.monotonic_ns() % 10**9
    alice, bob = f"alice{stamp}", f"bob{stamp}"
    alice_token, bob_token = await asyncio.gather(
        *(asyncio.to_thread(sign_up, server, name) for name in (alice, bob))
    )
    for n in range(3):
        await ahttp_gql(server, POST, {"s": f"@{bob} #{n}"}, alice_token)
    inbox = (await ahttp_gql(server, INBOX, None, bob_token))["data"]
    oldest = inbox["notifications"]["edges"][-1]["node"]["cursor"]
    client = await WSClient.open(server, TRANSPORT_WS, bob_token)
    await client.subscribe("1", LIVE, {"after": oldest})
    replayed = [(await client.next_data())["notifications"] for _ in range(2)]
    assert [r["notification"]["activity"]["message"][-3:] for r in replayed] == ["#1'", "#2'"]
    await ahttp_gql(server, POST, {"s": f"@{bob} #3"}, alice_token)
    live = (await client.next_data())["notifications"]
    assert live["notification"]["activity"]["message"].endswith("#3'")
    assert live["unreadCount"] == 4
    await client.close()


async def test_anonymous_notifications_are_unauthenticated(server: str) -> None:
    client = await WSClient.open(server, TRANSPORT_WS)
    await client.subscribe("1", LIVE)
    message = json.loads(await asyncio.wait_for(client.ws.recv(), 10))
    assert message["type"] in {"error", "next"}, message
    errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["UNAUTHENTICATED"]
    await client.close()


async def test_two_processes_over_redis_agree_on_the_badge(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    database = new_database(postgres_url, f"pulse_inbox_{time.monotonic_ns()}", tmp_path)
    env = {"REDIS_URL": redis_url}
    with daphne_server(tmp_path, database, env) as a, daphne_server(tmp_path, database, env) as b:
        alice_token, bob_token = await asyncio.gather(
            asyncio.to_thread(sign_up, a.base, "alice"), asyncio.to_thread(sign_up, b.base, "bob")
        )
        on_a = await WSClient.open(a.base, TRANSPORT_WS, bob_token)
        on_b = await WSClient.open(b.base, TRANSPORT_WS, bob_token)
        active_a, active_b = await subscriptions_active(a.base), await subscriptions_active(b.base)
        await on_a.subscribe("1", LIVE)
        await on_b.subscribe("1", LIVE)
        await until_subscribed(a.base, active_a + 1)  # each process counts its own
        await until_subscribed(b.base, active_b + 1)
        for n in range(3):  # written through a, through b, through a
            writer = (a, b)[n % 2]
            await ahttp_gql(writer.base, POST, {"s": f"@bob #{n}"}, alice_token)
            assert update(await on_a.next_data()) == (n + 1, "MENTION")
            assert update(await on_b.next_data()) == (n + 1, "MENTION")
        cursor = (await ahttp_gql(a.base, INBOX, None, bob_token))["data"]["notifications"][
            "edges"
        ][1]["node"]["cursor"]
        marked = await ahttp_gql(b.base, MARK, {"upTo": cursor}, bob_token)  # read on b
        assert marked["data"]["markNotificationsRead"] == 1
        assert update(await on_a.next_data()) == (1, None)  # the badge on a follows
        assert update(await on_b.next_data()) == (1, None)
        await on_a.close()
        await on_b.close()
