"""Operations end to end: a real daphne's ``/metrics`` and its JSON log lines.

Runs against the in-process channel layer and against a real redis-server (the module's
daphne serves only these tests, so the process-wide numbers move only because of them).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.clients import LEGACY_WS, TRANSPORT_WS, WSClient, ahttp_gql, sign_up
from tests.e2e.servers import DaphneServer

pytestmark = pytest.mark.e2e

STATUSES = "subscription { activity(kinds: [STATUS_CHANGE]) { cursor message } }"
POST = 'mutation { createStatusChange(input: {status: "metrics"}) { id } }'
ME = "{ me { id } }"


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample ``/metrics`` exposes, by name and labels."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:  # noqa: S310
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(check):
            await asyncio.sleep(0.05)


def log_lines(daphne: DaphneServer) -> list[dict[str, Any]]:
    """The server's log, one JSON object per line (fails on any other line)."""
    return [json.loads(line) for line in daphne.log_path.read_text().splitlines() if line]


async def test_metrics_follow_sockets_subscriptions_and_deliveries(daphne: DaphneServer) -> None:
    base = daphne.base
    token = await asyncio.to_thread(sign_up, base, "metrics_author")
    before = await asyncio.to_thread(scrape, base)
    open_before = sample(before, "pulse_websockets_open")
    active_before = sample(before, "pulse_subscriptions_active")

    shared = await WSClient.open(base, TRANSPORT_WS)  # the shared fan-out
    legacy = await WSClient.open(base, LEGACY_WS, token)  # one queue per subscription
    sockets = [shared, legacy]
    try:
        for socket in sockets:
            await socket.subscribe("1", STATUSES)

        def risen() -> bool:
            now = scrape(base)
            return (
                sample(now, "pulse_websockets_open") == open_before + 2
                and sample(now, "pulse_subscriptions_active") == active_before + 2
            )

        await eventually(risen)
        posted = await ahttp_gql(base, POST, token=token)
        assert "errors" not in posted, posted
        for socket in sockets:
            assert (await socket.next_data())["activity"]["message"].endswith("'metrics'")

        after: dict[Any, float] = {}

        def counted() -> bool:
            after.update(scrape(base))
            return sample(after, "pulse_deliveries_total", phase="live") == (
                sample(before, "pulse_deliveries_total", phase="live") + 2
            )

        await eventually(counted)
        published = "pulse_activities_published_total"
        assert sample(after, published, kind="STATUS_CHANGE") == (
            sample(before, published, kind="STATUS_CHANGE") + 1
        )
        lag_count = "pulse_delivery_lag_seconds_count"
        assert sample(after, lag_count) >= sample(before, lag_count) + 1
        lag = sample(after, "pulse_delivery_lag_seconds_sum") - sample(
            before, "pulse_delivery_lag_seconds_sum"
        )
        assert 0 < lag < 10
        requests = "pulse_http_requests_total"
        labels = {"method": "POST", "route": "graphql/", "status": "200"}
        assert sample(after, requests, **labels) >= sample(before, requests, **labels) + 1
    finally:
        for socket in sockets:
            await socket.close()

    def fallen() -> bool:
        now = scrape(base)
        return (
            sample(now, "pulse_websockets_open") == open_before
            and sample(now, "pulse_subscriptions_active") == active_before
        )

    await eventually(fallen)


async def test_log_lines_are_json_with_request_and_connection_ids(daphne: DaphneServer) -> None:
    base = daphne.base
    token = await asyncio.to_thread(sign_up, base, "log_reader")
    me = await ahttp_gql(base, ME, token=token)
    user_pk = int(base64.b64decode(me["data"]["me"]["id"]).decode().split(":")[1])
    signed_in = await WSClient.open(base, TRANSPORT_WS, token)
    anonymous = await WSClient.open(base, LEGACY_WS)
    ports = {
        signed_in.ws.local_address[1]: user_pk,
        anonymous.ws.local_address[1]: None,
    }
    await signed_in.close()
    await anonymous.close()

    def disconnect_logged() -> bool:
        """Both sockets' ``websocket_disconnected`` lines are in the log."""
        disconnected = set()
        for line in daphne.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line still being written
                found = json.loads(line)
                if found.get("event") == "websocket_disconnected":
                    disconnected.add(int(found["client"].rsplit(":", 1)[1]))
        return set(ports) <= disconnected

    await eventually(disconnect_logged)
    with pytest.raises(urllib.error.HTTPError):  # 401: Django logs a warning
        await ahttp_gql(base, ME, token=f"{token}-wrong")
    with urllib.request.urlopen(f"{base}/healthz?probe={token}", timeout=5):  # noqa: S310
        pass

    lines = log_lines(daphne)
    for line in lines:
        assert {"timestamp", "level", "logger", "event"} <= line.keys(), line
        assert not ("request_id" in line and "connection_id" in line), line
        assert token not in json.dumps(line), line

    access = [line for line in lines if line["logger"] == "daphne.access"]
    http = [line for line in access if line["event"] == "http_request"]
    assert http and all(line["request_id"] for line in http)
    assert any(line.get("user_id") == user_pk for line in http)
    assert all("?" not in line["path"] for line in http)
    # Django's lines for a request carry the id of that request's access line.
    request_ids = {line["request_id"] for line in http}
    django_lines = [line for line in lines if line["logger"].startswith("django")]
    assert "request_finished" in {line["event"] for line in django_lines}
    assert "request_started" not in {line["event"] for line in django_lines}  # DEBUG only
    assert any(line["logger"] == "django.request" for line in django_lines)  # the 401
    assert all(line["request_id"] in request_ids for line in django_lines)
    assert any(
        line["event"] == "request_finished" and line.get("user_id") == user_pk
        for line in django_lines
    )

    # Every line about a socket carries that socket's id, and no other socket's.
    ids_by_port: dict[int, set[str]] = {}
    for line in access:
        if line["event"].startswith("websocket_"):
            port = int(line["client"].rsplit(":", 1)[1])
            ids_by_port.setdefault(port, set()).add(line["connection_id"])
    for port, user in ports.items():
        (connection_id,) = ids_by_port[port]
        events = [line["event"] for line in lines if line.get("connection_id") == connection_id]
        assert events[:2] == ["websocket_connecting", "websocket_connected"], events
        assert "websocket_disconnected" in events
        (init,) = [
            line
            for line in lines
            if line["event"] == "websocket_connection_init"
            and line["connection_id"] == connection_id
        ]
        assert init["user_id"] == user
        assert init["logger"] == "schema.views"
    assert len({next(iter(ids)) for ids in ids_by_port.values()}) == len(ids_by_port)
