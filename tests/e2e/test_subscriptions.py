"""Subscriptions end to end: a real daphne, real WebSocket clients, both protocols.

Each test runs against the in-process channel layer and against a real redis-server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from tests.e2e.clients import (
    LEGACY_WS,
    TRANSPORT_WS,
    WSClient,
    ahttp_gql,
    http_gql,
    sign_up,
    subscriptions_active,
    until_subscribed,
)

pytestmark = pytest.mark.e2e

ACTIVITY = """
subscription($after: String, $kinds: [ActivityKind!]) {
  activity(after: $after, kinds: $kinds) {
    cursor kind verb message eventId
    actor { username email }
    event { id visibility ... on StatusChange { status } ... on Comment { body } }
  }
}"""
POST = """
mutation($s: String!, $v: Visibility) {
  createStatusChange(input: {status: $s, visibility: $v}) { id }
}"""

names = (f"u{n}" for n in itertools.count())


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_mutation_over_http_arrives_on_the_socket(server: str, protocol: str) -> None:
    name = next(names)
    token = await asyncio.to_thread(sign_up, server, name)
    socket = await WSClient.open(server, protocol)
    active = await subscriptions_active(server)
    await socket.subscribe("1", ACTIVITY, {"kinds": ["STATUS_CHANGE"]})
    await until_subscribed(server, active + 1)

    posted = await ahttp_gql(server, POST, {"s": "shipping v2"}, token)
    event_id = posted["data"]["createStatusChange"]["id"]

    activity = (await socket.next_data())["activity"]
    assert activity["kind"] == "STATUS_CHANGE"
    assert activity["verb"] == "CREATED"
    assert activity["actor"] == {"username": name, "email": None}
    assert activity["message"] == f"{name} changed status to 'shipping v2'"
    assert activity["eventId"] == event_id
    assert activity["event"] == {"id": event_id, "visibility": "PUBLIC", "status": "shipping v2"}
    await socket.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_after_replays_then_goes_live_without_gap_or_duplicate(
    server: str, protocol: str
) -> None:
    name = next(names)
    token = await asyncio.to_thread(sign_up, server, name)
    for n in range(5):
        await ahttp_gql(server, POST, {"s": f"before {n}"}, token)
    history = (await ahttp_gql(server, "{ activities(first: 100) { cursor } }"))["data"]
    start = history["activities"][-3]["cursor"]  # the last two posts are replayed

    socket = await WSClient.open(server, protocol)
    # Writes race the replay: each must arrive exactly once, in cursor order.
    writer = asyncio.gather(
        *(ahttp_gql(server, POST, {"s": f"during {n}"}, token) for n in range(10))
    )
    await socket.subscribe("r", ACTIVITY, {"after": start, "kinds": ["STATUS_CHANGE"]})
    await writer
    received = [(await socket.next_data())["activity"] for _ in range(12)]
    assert await socket.nothing_within(0.5)

    log = (
        await ahttp_gql(
            server,
            "query($a: String) { activities(after: $a, first: 100) { cursor kind actor { username } } }",
            {"a": start},
        )
    )["data"]["activities"]
    expected = [a["cursor"] for a in log if a["kind"] == "STATUS_CHANGE"]
    assert [a["cursor"] for a in received] == expected
    assert len(set(expected)) == 12
    statuses = [a["event"]["status"] for a in received]
    assert statuses[:2] == ["before 3", "before 4"]
    assert sorted(statuses[2:]) == sorted(f"during {n}" for n in range(10))
    await socket.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_private_activity_reaches_only_its_author(server: str, protocol: str) -> None:
    author, other = next(names), next(names)
    author_token = await asyncio.to_thread(sign_up, server, author)
    other_token = await asyncio.to_thread(sign_up, server, other)
    start = (await ahttp_gql(server, "{ activities(first: 100) { cursor } }"))["data"][
        "activities"
    ][-1]["cursor"]

    sockets = {
        "author": await WSClient.open(server, protocol, author_token),
        "other": await WSClient.open(server, protocol, other_token),
        "anonymous": await WSClient.open(server, protocol),
    }
    active = await subscriptions_active(server)
    for client in sockets.values():
        await client.subscribe("live", ACTIVITY, {"kinds": ["STATUS_CHANGE"]})
    await until_subscribed(server, active + len(sockets))
    await ahttp_gql(server, POST, {"s": "secret plan", "v": "PRIVATE"}, author_token)
    await ahttp_gql(server, POST, {"s": "public news"}, author_token)

    mine = [(await sockets["author"].next_data())["activity"] for _ in range(2)]
    assert [a["event"]["status"] for a in mine] == ["secret plan", "public news"]
    assert mine[0]["actor"]["email"] == f"{author}@example.com"
    for viewer in ("other", "anonymous"):
        seen = (await sockets[viewer].next_data())["activity"]
        assert seen["event"]["status"] == "public news"
        assert seen["actor"]["email"] is None
        assert await sockets[viewer].nothing_within(0.3)

    # Replay and history apply the same rule.
    for token in (other_token, None):
        replay = await WSClient.open(server, protocol, token)
        await replay.subscribe("replay", ACTIVITY, {"after": start, "kinds": ["STATUS_CHANGE"]})
        assert (await replay.next_data())["activity"]["event"]["status"] == "public news"
        assert await replay.nothing_within(0.3)
        await replay.close()
        history = await ahttp_gql(
            server, "query($a: String) { activities(after: $a) { message } }", {"a": start}, token
        )
        assert [a["message"] for a in history["data"]["activities"]] == [
            f"{author} changed status to 'public news'"
        ]
    for client in sockets.values():
        await client.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_bad_token_closes_with_4403(server: str, protocol: Subprotocol) -> None:
    async with connect(
        server.replace("http", "ws", 1) + "/graphql/", subprotocols=[protocol]
    ) as ws:
        await ws.send(
            json.dumps(
                {"type": "connection_init", "payload": {"authorization": "Bearer pulse_nope"}}
            )
        )
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_missing_connection_init_closes_with_4408(server: str) -> None:
    async with connect(
        server.replace("http", "ws", 1) + "/graphql/", subprotocols=[TRANSPORT_WS]
    ) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)  # the server's init timeout is 2 s here
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408


def test_health_and_readiness(server: str) -> None:
    with urllib.request.urlopen(server + "/healthz", timeout=5) as response:  # noqa: S310
        assert response.status == 200
    with urllib.request.urlopen(server + "/readyz", timeout=5) as response:  # noqa: S310
        assert json.loads(response.read()) == {
            "status": "ok",
            "checks": {"database": "ok", "channel_layer": "ok"},
        }


def test_graphiql_is_served_with_local_assets_only(server: str) -> None:
    request = urllib.request.Request(server + "/graphql/", headers={"Accept": "text/html"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        page = response.read().decode()
    assert "https://" not in page and "http://" not in page
    for asset in ("vendor/graphiql.min.js", "vendor/react.production.min.js", "pulse/graphiql.js"):
        assert f"/static/{asset}" in page
        with urllib.request.urlopen(f"{server}/static/{asset}", timeout=5) as response:  # noqa: S310
            assert response.status == 200


def test_queries_run_over_http_get(server: str) -> None:
    body = http_gql(server, "{ me { id } }")
    assert body == {"data": {"me": None}}


def _session_cookie(server: str, username: str) -> str:
    """Sign in over HTTP like a browser and return the ``Cookie`` header it would send."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    request = urllib.request.Request(  # noqa: S310
        server + "/graphql/",
        data=json.dumps(
            {
                "query": "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
                "variables": {"u": username, "p": "correct horse 9 battery"},
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with opener.open(request, timeout=10) as response:
        cookies = response.headers.get_all("Set-Cookie")
    return "; ".join(c.split(";", 1)[0] for c in cookies)


async def test_session_cookie_authenticates_the_socket(server: str) -> None:
    name = next(names)
    token = await asyncio.to_thread(sign_up, server, name)
    cookie = await asyncio.to_thread(_session_cookie, server, name)
    assert "sessionid=" in cookie
    url = server.replace("http", "ws", 1) + "/graphql/"
    async with connect(
        url,
        subprotocols=[TRANSPORT_WS],
        additional_headers={"Cookie": cookie, "Origin": server},
    ) as ws:
        socket = WSClient(ws, TRANSPORT_WS)
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        active = await subscriptions_active(server)
        await socket.subscribe("1", ACTIVITY, {"kinds": ["STATUS_CHANGE"]})
        await until_subscribed(server, active + 1)
        await ahttp_gql(server, POST, {"s": "only me", "v": "PRIVATE"}, token)
        activity = (await socket.next_data())["activity"]
        assert activity["event"]["status"] == "only me"
        assert activity["actor"]["email"] == f"{name}@example.com"


async def test_foreign_origin_with_cookie_is_refused(server: str) -> None:
    name = next(names)
    await asyncio.to_thread(sign_up, server, name)
    cookie = await asyncio.to_thread(_session_cookie, server, name)
    url = server.replace("http", "ws", 1) + "/graphql/"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            url,
            subprotocols=[TRANSPORT_WS],
            additional_headers={"Cookie": cookie, "Origin": "https://evil.example"},
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_unknown_operation_name_is_a_client_error(server: str) -> None:
    socket = await WSClient.open(server, TRANSPORT_WS)
    payload = {"query": "subscription { activity { cursor } }", "operationName": "Live"}
    await socket.ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
    message = json.loads(await asyncio.wait_for(socket.ws.recv(), 10))
    assert message["type"] == "error"
    assert [e["extensions"]["code"] for e in message["payload"]] == ["GRAPHQL_VALIDATION_FAILED"]
    await socket.close()
