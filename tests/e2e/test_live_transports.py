"""SSE and multipart subscriptions against a real daphne, on both channel layers.

The same ``activity`` subscription as over WebSocket: visibility, replay by cursor and
live delivery, plus SSE's ``id:`` lines and ``Last-Event-ID`` resume, the single
connection mode, authentication and keep-alive.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.clients import (
    ahttp_gql,
    event_stream,
    multipart_subscription,
    sign_up,
    subscriptions_active,
    until_subscribed,
)
from tests.e2e.servers import daphne_server

pytestmark = pytest.mark.e2e

ACTIVITY = """subscription($after: String) {
  activity(after: $after) { cursor message event { visibility } }
}"""
POST = """mutation($s: String!, $v: Visibility) {
  createStatusChange(input: {status: $s, visibility: $v}) { id }
}"""
HISTORY = "{ activities(first: 100) { cursor message } }"

names = (f"t{n}" for n in itertools.count())


async def post(server: str, token: str, status: str, visibility: str = "PUBLIC") -> None:
    body = await ahttp_gql(server, POST, {"s": status, "v": visibility}, token)
    assert "errors" not in body, body


async def last_cursor(server: str) -> str:
    history = await ahttp_gql(server, HISTORY)
    cursor: str = history["data"]["activities"][-1]["cursor"]
    return cursor


async def test_sse_streams_with_cursor_ids_and_resumes_from_last_event_id(server: str) -> None:
    name = next(names)
    token = await asyncio.to_thread(sign_up, server, name)
    start = await last_cursor(server)
    params = {"query": ACTIVITY, "variables": f'{{"after": "{start}"}}'}
    received: list[tuple[str | None, str]] = []
    async with event_stream(server, params=params) as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        await post(server, token, "one")
        await post(server, token, "two")
        for _ in range(2):
            found = await stream.next_data()
            activity = found.data["data"]["activity"]
            assert found.id == activity["cursor"]  # every item carries its cursor
            received.append((found.id, activity["message"]))
    await post(server, token, "missed")  # while no stream is open
    # Reconnecting as EventSource does: the same URL with Last-Event-ID.
    headers = {"Last-Event-ID": received[0][0] or ""}
    async with event_stream(server, params=params, headers=headers) as resumed:
        messages = [(await resumed.next_data()).data["data"]["activity"]["message"] for _ in "12"]
        assert messages == [f"{name} changed status to 'two'", f"{name} changed status to 'missed'"]
        await post(server, token, "live again")
        live = await resumed.next_data()
        assert live.data["data"]["activity"]["message"].endswith("'live again'")


async def test_sse_post_in_distinct_mode_and_private_events_reach_their_author_only(
    server: str,
) -> None:
    name = next(names)
    token = await asyncio.to_thread(sign_up, server, name)
    live = {"query": ACTIVITY}
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        event_stream(server, "POST", json=live, headers=auth) as own,
        event_stream(server, "POST", json=live) as anonymous,
    ):
        await post(server, token, "secret", "PRIVATE")
        await post(server, token, "public")
        mine = [(await own.next_data()).data["data"]["activity"]["message"] for _ in "12"]
        assert [m.rsplit(" ", 1)[-1] for m in mine] == ["'secret'", "'public'"]
        theirs = await anonymous.next_data()
        assert theirs.data["data"]["activity"]["message"].endswith("'public'")


async def test_sse_single_connection_mode(server: str) -> None:
    name = next(names)
    token = await asyncio.to_thread(sign_up, server, name)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        reserved = await client.put("/graphql/stream", headers=auth)
        assert reserved.status_code == 201
        stream_token = reserved.text
        with_token = {**auth, "X-GraphQL-Event-Stream-Token": stream_token}
        async with event_stream(server, headers=with_token) as stream:
            body = {"query": ACTIVITY, "extensions": {"operationId": "op1"}}
            started = await client.post("/graphql/stream", json=body, headers=with_token)
            assert started.status_code == 202
            again = await client.post("/graphql/stream", json=body, headers=with_token)
            assert again.status_code == 409  # one operation per id
            query = {"query": "{ me { username } }", "extensions": {"operationId": "q"}}
            assert (
                await client.post("/graphql/stream", json=query, headers=with_token)
            ).status_code == 202
            answered = await stream.next_data()
            assert answered.data == {"id": "q", "payload": {"data": {"me": {"username": name}}}}
            assert (await stream.next_event()).event == "complete"
            await post(server, token, "to op1")
            found = await stream.next_data()
            assert found.data["id"] == "op1"
            assert found.data["payload"]["data"]["activity"]["message"].endswith("'to op1'")
            stopped = await client.delete(
                "/graphql/stream", params={"operationId": "op1"}, headers=with_token
            )
            assert stopped.status_code == 200
            # Someone else cannot use this stream's token.
            other = await asyncio.to_thread(sign_up, server, next(names))
            foreign = {
                "Authorization": f"Bearer {other}",
                "X-GraphQL-Event-Stream-Token": stream_token,
            }
            assert (
                await client.post("/graphql/stream", json=body, headers=foreign)
            ).status_code == 403
            invalid = {
                "query": "subscription { activity { nope } }",
                "extensions": {"operationId": "x"},
            }
            refused = await client.post("/graphql/stream", json=invalid, headers=with_token)
            assert refused.status_code == 400
            assert refused.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
            # Last (a timed-out read ends this client's stream):
            await post(server, token, "after stop")
            with pytest.raises(TimeoutError):
                await stream.next_event(timeout=1)


async def test_a_bad_token_is_401_before_any_stream(server: str) -> None:
    bad = {"Authorization": "Bearer pulse_not-a-token"}
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        for response in (
            await client.get(
                "/graphql/stream",
                params={"query": ACTIVITY},
                headers={**bad, "Accept": "text/event-stream"},
            ),
            await client.post(
                "/graphql/",
                json={"query": ACTIVITY},
                headers={**bad, "Accept": 'multipart/mixed;subscriptionSpec="1.0"'},
            ),
        ):
            assert response.status_code == 401
            assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/mixed;subscriptionSpec="1.0",application/json',
        "multipart/mixed;subscriptionSpec=1.0,application/json",
    ],
)
async def test_multipart_subscription_replays_then_streams(server: str, accept: str) -> None:
    name = next(names)
    token = await asyncio.to_thread(sign_up, server, name)
    await post(server, token, "before")
    history = await ahttp_gql(server, HISTORY)
    cursors = [a["cursor"] for a in history["data"]["activities"]]
    async with multipart_subscription(
        server, ACTIVITY, {"after": cursors[-2]}, token, accept=accept
    ) as stream:
        assert stream.response.headers["content-type"].startswith("multipart/mixed")
        replayed = await stream.next_part()
        assert replayed["payload"]["data"]["activity"]["message"].endswith("'before'")
        await post(server, token, "live")
        live = await stream.next_part()
        assert live["payload"]["data"]["activity"]["message"].endswith("'live'")


async def test_keepalive_on_sse_and_multipart(tmp_path: Path) -> None:
    with daphne_server(tmp_path, env={"PULSE_KEEPALIVE_SECONDS": "0.3"}) as server:
        active = await subscriptions_active(server.base)
        async with (
            event_stream(server.base, params={"query": ACTIVITY}) as sse,
            multipart_subscription(server.base, ACTIVITY) as multipart,
        ):
            await until_subscribed(server.base, active + 2)
            # Keep-alives come while nothing else does: the first byte, then one
            # comment per interval; multipart heartbeats.
            await asyncio.gather(sse.until_comments(3), multipart.until_heartbeats(2))
            token = await asyncio.to_thread(sign_up, server.base, "kept")
            assert (await sse.next_data()).data["data"]["activity"]["message"] == "kept joined"
            part = await multipart.next_part()
            assert part["payload"]["data"]["activity"]["message"] == "kept joined"
            assert sse.comments >= 3  # the first byte, then one comment per interval
            assert multipart.heartbeats >= 2
            assert token

        def closed_streams() -> list[str]:
            lines = [
                json.loads(line)
                for line in server.log_path.read_text().splitlines()
                if line.startswith("{")
            ]
            return sorted(
                line["transport"] for line in lines if line.get("event") == "live_stream_closed"
            )

        # The client closed both: each stream's end is logged, once.
        async with asyncio.timeout(5):
            while closed_streams() != ["multipart", "sse"]:
                await asyncio.sleep(0.05)


async def test_live_streams_count_against_the_users_connection_cap(tmp_path: Path) -> None:
    from tests.e2e.clients import TRANSPORT_WS, WSClient

    with daphne_server(tmp_path, env={"PULSE_MAX_SOCKETS_PER_USER": "2"}) as server:
        token = await asyncio.to_thread(sign_up, server.base, "capped")
        auth = {"Authorization": f"Bearer {token}"}
        socket = await WSClient.open(server.base, TRANSPORT_WS, token)
        async with event_stream(server.base, params={"query": ACTIVITY}, headers=auth) as sse:
            assert sse.response.status_code == 200
            async with multipart_subscription(server.base, ACTIVITY, token=token) as third:
                assert third.response.status_code == 429
                body = json.loads(await third.response.aread())
                assert body["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
            async with event_stream(server.base, params={"query": ACTIVITY}) as anonymous:
                assert anonymous.response.status_code == 200  # anonymous streams are not capped
        async with multipart_subscription(server.base, ACTIVITY, token=token) as again:
            assert again.response.status_code == 200  # the SSE stream's place was freed
        await socket.close()
