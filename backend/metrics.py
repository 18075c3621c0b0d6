"""Prometheus metrics of one server process, served at ``/metrics``.

Every process counts for itself (no shared state between processes), so Prometheus
scrapes each server process. The fan-out path counts once per batch or per activity,
never once per socket write: ``DELIVERIES_LIVE.inc(n)`` after a batch, one lag
observation per activity and process.

- ``pulse_websockets_open``: WebSocket connections open (gauge).
- ``pulse_subscriptions_active``: ``activity`` subscriptions in this process's hub
  (gauge, read when scraped).
- ``pulse_activities_published_total{kind}``: activities committed and handed to the
  channel layer by this process.
- ``pulse_deliveries_total{phase}``: activity messages written to sockets; ``phase`` is
  ``live`` (the fan-out) or ``replay`` (the log after a subscription's ``after`` cursor).
- ``pulse_slow_consumer_drops_total{reason}``: ``unsent_bytes`` (socket closed with 1013,
  ``backend.server``) or ``queue_full`` (subscription ended with ``SLOW_CONSUMER``).
- ``pulse_subscriber_faults_total{reason}``: live subscribers ended alone by a fault
  (``write``, ``gone``, ``execution``, ``adapter``); everyone else kept receiving.
- ``pulse_delivery_lag_seconds``: from an activity's publication (its commit) to the
  moment this process's fan-out has written it to every local subscriber.
- ``pulse_http_requests_total{method,route,status}`` and
  ``pulse_http_request_duration_seconds{method,route}``: Django requests (``route`` is
  the URL pattern, so the number of series stays bounded).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.urls import Resolver404, resolve
from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_asgi_app,
)

METRICS_PATH = "/metrics"

disable_created_metrics()  # no ``*_created`` series beside every counter and histogram

WEBSOCKETS_OPEN = Gauge("pulse_websockets_open", "WebSocket connections open in this process.")
SUBSCRIPTIONS_ACTIVE = Gauge(
    "pulse_subscriptions_active", "activity subscriptions registered in this process's hub."
)
ACTIVITIES_PUBLISHED = Counter(
    "pulse_activities_published",
    "Activities committed and handed to the channel layer by this process.",
    ["kind"],
)
DELIVERIES = Counter(
    "pulse_deliveries",
    "Activity messages written to WebSockets (live: the fan-out; replay: after a cursor).",
    ["phase"],
)
DELIVERIES_LIVE = DELIVERIES.labels(phase="live")
DELIVERIES_REPLAY = DELIVERIES.labels(phase="replay")
SLOW_CONSUMER_DROPS = Counter(
    "pulse_slow_consumer_drops",
    "Slow consumers dropped: socket closed with 1013 (unsent_bytes) or subscription "
    "ended with SLOW_CONSUMER (queue_full).",
    ["reason"],
)
DROPPED_UNSENT_BYTES = SLOW_CONSUMER_DROPS.labels(reason="unsent_bytes")
DROPPED_QUEUE_FULL = SLOW_CONSUMER_DROPS.labels(reason="queue_full")
SUBSCRIBER_FAULTS = Counter(
    "pulse_subscriber_faults",
    "Live subscribers ended alone by a fault: write (sending raised), gone (connection "
    "closed under it), execution (its shape's execution raised) or adapter (its "
    "protocol adapter failed).",
    ["reason"],
)
DELIVERY_LAG = Histogram(
    "pulse_delivery_lag_seconds",
    "From an activity's publication (commit) to this process's fan-out having written it.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
HTTP_REQUESTS = Counter(
    "pulse_http_requests", "HTTP requests answered by Django.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "pulse_http_request_duration_seconds",
    "Time Django took to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

GetResponse = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]


def record_lag(published_at: float, now: float | None = None) -> None:
    """Observe one activity's publish-to-delivery lag (seconds since the epoch)."""
    DELIVERY_LAG.observe(max(0.0, (time.time() if now is None else now) - published_at))


class HttpMetricsMiddleware:
    """Count Django's HTTP requests and time them, by method, URL pattern and status."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        started = time.perf_counter()
        response: HttpResponseBase = self.get_response(request)  # type: ignore[assignment]
        _observe(request, response, time.perf_counter() - started)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response: HttpResponseBase = await self.get_response(request)  # type: ignore[misc]
        _observe(request, response, time.perf_counter() - started)
        return response


def _route(request: HttpRequest) -> str:
    """The URL pattern that matched (bounded, unlike paths), or ``unmatched``."""
    match = request.resolver_match
    if match is None:  # answered by a middleware before the URL was resolved
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return "unmatched"
    return match.route or match.view_name or "unmatched"


def _observe(request: HttpRequest, response: HttpResponseBase, seconds: float) -> None:
    method = request.method if request.method in KNOWN_METHODS else "other"
    route = _route(request)
    HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def with_metrics_endpoint(app: ASGIApp) -> ASGIApp:
    """``app`` with ``/metrics`` answered by prometheus_client (``PULSE_METRICS_ENABLED``).

    It is served before Django, so neither ``ALLOWED_HOSTS`` nor the HTTPS redirect
    gets in the way of a scraper addressing the process by its IP and port; restrict the
    path at the proxy instead (README, "Operations").
    """
    if not settings.PULSE_METRICS_ENABLED:
        return app
    metrics_app = make_asgi_app()

    async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in (METRICS_PATH, METRICS_PATH + "/"):
            await metrics_app(scope, receive, send)
        else:
            await app(scope, receive, send)

    return serve
