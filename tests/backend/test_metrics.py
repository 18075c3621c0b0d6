"""Prometheus metrics, in process: what each counter counts, and how cheaply."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client, override_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from asgi import application
from backend import metrics
from backend.server.daphne import PulseWebSocketProtocol
from events import selectors, services
from events.models import Visibility
from schema.live.engine import get_engine
from schema.schema import schema
from tests.helpers import gql
from tests.schema.live_sinks import SMALL, RecordingSink, subscribe
from tests.schema.test_live_adapters import Socket, eventually, post

PULSE_METRICS = {
    "pulse_websockets_open",
    "pulse_subscriptions_active",
    "pulse_activities_published",
    "pulse_deliveries",
    "pulse_slow_consumer_drops",
    "pulse_delivery_lag_seconds",
    "pulse_http_requests",
    "pulse_http_request_duration_seconds",
}


def value(name: str, **labels: str) -> float:
    """The current value of one sample (0 when it was never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def asgi_get(
    path: str, host: bytes = b"10.1.2.3:8000", **scope_extra: Any
) -> tuple[int, dict[bytes, bytes], bytes]:
    """GET ``path`` from Pulse's ASGI application (what daphne serves), in process.

    The default ``host`` is how a scraper addresses one process: by IP and port."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", host)],
        "client": ("10.9.9.9", 5000),
        "server": ("10.1.2.3", 8000),
        **scope_extra,
    }
    sent: list[dict[str, Any]] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.Future()  # the client stays connected until the answer is sent
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


@pytest.mark.django_db
def test_a_mutation_counts_one_published_activity_of_its_kind(
    client: Client, alice_token: str, django_capture_on_commit_callbacks: Any
) -> None:
    before = value("pulse_activities_published_total", kind="STATUS_CHANGE")
    with django_capture_on_commit_callbacks(execute=True):
        body = gql(
            client,
            'mutation { createStatusChange(input: {status: "hello"}) { id } }',
            token=alice_token,
        )
    assert "errors" not in body, body
    assert value("pulse_activities_published_total", kind="STATUS_CHANGE") == before + 1


@pytest.mark.django_db
def test_a_rolled_back_write_counts_nothing(alice: User) -> None:
    before = value("pulse_activities_published_total", kind="STATUS_CHANGE")
    with pytest.raises(RuntimeError), transaction.atomic():
        services.status_change_create(actor=alice, status="never", visibility=Visibility.PUBLIC)
        raise RuntimeError
    assert value("pulse_activities_published_total", kind="STATUS_CHANGE") == before


async def test_metrics_are_served_as_text_exposition_before_django() -> None:
    status, headers, body = await asgi_get("/metrics")
    assert status == 200  # whatever the Host: ALLOWED_HOSTS is Django's, not this path's
    assert headers[b"Content-Type"].startswith(b"text/plain; version=0.0.4")
    families = {family.name for family in text_string_to_metric_families(body.decode())}
    assert families >= PULSE_METRICS
    assert "process_cpu_seconds" in families  # the default process collector
    assert b"_created" not in body  # no creation-time series beside every counter


async def test_metrics_can_be_switched_off() -> None:
    async def django(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 404, "headers": []})

    with override_settings(PULSE_METRICS_ENABLED=False):
        assert metrics.with_metrics_endpoint(django) is django
    with override_settings(PULSE_METRICS_ENABLED=True):
        assert metrics.with_metrics_endpoint(django) is not django


@pytest.mark.django_db
def test_http_requests_are_counted_by_method_route_and_status(client: Client) -> None:
    labels = {"method": "GET", "route": "healthz", "status": "200"}
    before = value("pulse_http_requests_total", **labels)
    missing = value("pulse_http_requests_total", method="GET", route="unmatched", status="404")
    assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/page?token=secret").status_code == 404
    assert value("pulse_http_requests_total", **labels) == before + 1
    assert (
        value("pulse_http_requests_total", method="GET", route="unmatched", status="404")
        == missing + 1
    )
    assert value("pulse_http_request_duration_seconds_count", method="GET", route="healthz") > 0


@pytest.mark.django_db(transaction=True)
async def test_a_fan_out_to_n_subscribers_counts_n_deliveries_in_one_increment(
    make_user: Callable[..., User],
) -> None:
    alice = await sync_to_async(make_user)("alice")
    engine = get_engine(schema)
    n = 300  # more than one FANOUT_SLICE
    sinks = [RecordingSink() for _ in range(n)]
    for sink in sinks:
        await subscribe(engine, sink, SMALL)
    before = value("pulse_deliveries_total", phase="live")
    with mock.patch.object(
        metrics.DELIVERIES_LIVE, "inc", wraps=metrics.DELIVERIES_LIVE.inc
    ) as inc:
        await post(alice, "hello")
        await eventually(lambda: all(sink.positions for sink in sinks))
        rows = await sync_to_async(selectors.log_after)(after_id=0, limit=10)
        await engine.deliver(rows[-1:])  # already sent: nothing is written twice
    assert all(len(sink.positions) == 1 for sink in sinks)
    assert value("pulse_deliveries_total", phase="live") == before + n
    assert inc.call_count == 1  # once per batch, never once per socket
    for sink in sinks:
        engine.end(engine_subscriber(engine, sink))


def engine_subscriber(engine: Any, sink: RecordingSink) -> Any:
    """The engine's subscriber whose sink is ``sink``."""
    for shape in engine.shapes.values():
        for group in shape.viewers.values():
            for subscriber in group:
                if subscriber.sink is sink:
                    return subscriber
    raise LookupError(sink)


@pytest.mark.django_db(transaction=True)
@override_settings(PULSE_FANOUT_WINDOW_SECONDS=0)
async def test_lag_is_observed_once_per_activity_not_per_subscriber(
    make_user: Callable[..., User],
) -> None:
    alice = await sync_to_async(make_user)("alice")
    engine = get_engine(schema)
    active = value("pulse_subscriptions_active")
    sinks = [RecordingSink() for _ in range(5)]
    subscribers = [await subscribe(engine, sink, SMALL) for sink in sinks]
    try:
        assert value("pulse_subscriptions_active") == active + 5
        count = value("pulse_delivery_lag_seconds_count")
        total = value("pulse_delivery_lag_seconds_sum")
        await post(alice, "one")
        await eventually(lambda: all(sink.positions for sink in sinks))
        await eventually(lambda: value("pulse_delivery_lag_seconds_count") == count + 1)
        lag = value("pulse_delivery_lag_seconds_sum") - total
        assert 0 < lag < 5
        assert engine.listener._published_at == {}  # the publish time was used and forgotten
    finally:
        for subscriber in subscribers:
            if subscriber is not None:
                engine.end(subscriber)
    assert value("pulse_subscriptions_active") == active


@pytest.mark.django_db(transaction=True)
async def test_open_sockets_and_subscriptions_rise_and_fall() -> None:
    sockets_before = value("pulse_websockets_open")
    active = value("pulse_subscriptions_active")
    socket = await Socket().open()
    try:
        assert value("pulse_websockets_open") == sockets_before + 1
        await socket.subscribe("1")
        await eventually(lambda: value("pulse_subscriptions_active") == active + 1)
        await socket.send({"id": "1", "type": "complete"})
        await eventually(lambda: value("pulse_subscriptions_active") == active)
    finally:
        await socket.close()
    await eventually(lambda: value("pulse_websockets_open") == sockets_before)


@pytest.mark.django_db(transaction=True)
@override_settings(PULSE_SUBSCRIBER_QUEUE_SIZE=1)
async def test_a_full_queue_is_counted_as_a_slow_consumer_drop(
    make_user: Callable[..., User],
) -> None:
    """Live items queue (bounded) while a subscriber's replay is still being written."""
    alice = await sync_to_async(make_user)("alice")
    await post(alice, "old")
    engine = get_engine(schema)
    before = value("pulse_slow_consumer_drops_total", reason="queue_full")
    release = asyncio.Event()

    class StalledReplay(RecordingSink):
        async def write(self, encoded: Any) -> None:
            await release.wait()  # the replay's write waits while live activities come
            await super().write(encoded)

    sink = StalledReplay()
    query = "subscription($after: String) { activity(after: $after) { cursor } }"
    opening = asyncio.create_task(subscribe(engine, sink, query, {"after": "YWN0aXZpdHk6MA=="}))
    await eventually(lambda: engine.count == 1)
    for n in range(3):
        await post(alice, f"burst {n}")
    latest = await sync_to_async(selectors.latest_activity_id)()
    await eventually(lambda: engine.listener.delivered_id == latest)
    release.set()
    assert await opening is None  # ended, not live
    assert sink.errors[0][0]["extensions"]["code"] == "SLOW_CONSUMER"
    assert value("pulse_slow_consumer_drops_total", reason="queue_full") == before + 1
    assert engine.count == 0


def test_a_socket_closed_for_unsent_bytes_is_counted() -> None:
    protocol = mock.Mock(spec=PulseWebSocketProtocol)
    protocol.client_addr = ["127.0.0.1", 5000]
    protocol.connection_id = "c-1"
    before = value("pulse_slow_consumer_drops_total", reason="unsent_bytes")
    PulseWebSocketProtocol._close_slow_consumer(protocol)
    assert value("pulse_slow_consumer_drops_total", reason="unsent_bytes") == before + 1
    assert protocol.closing_slow_consumer is True
