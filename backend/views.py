"""Liveness and readiness probes, and the JSON answer to a failed CSRF check."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


async def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the process runs."""
    return JsonResponse({"status": "ok"})


def _database_answers() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _channel_layer_answers() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("pulse.readyz.")
    await layer.send(channel, {"type": "readyz.ping"})
    await layer.receive(channel)


async def _check(name: str, probe: object) -> tuple[str, str]:
    try:
        if asyncio.iscoroutine(probe):
            await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
        return name, "ok"
    except Exception as exc:
        logger.warning("Readiness check %s failed: %s", name, exc)
        return name, "unavailable"


async def readyz(request: HttpRequest) -> JsonResponse:
    """200 only when the database and the channel layer answer, else 503."""
    results = dict(
        await asyncio.gather(
            _check("database", sync_to_async(_database_answers)()),
            _check("channel_layer", _channel_layer_answers()),
        )
    )
    ready = all(state == "ok" for state in results.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> JsonResponse:
    """403 as a coded GraphQL error (``CSRF_FAILURE_VIEW``), not Django's HTML page.

    Only requests carrying a session cookie are checked: browsers send it by
    themselves, so such a request must prove it came from Pulse's own pages.
    """
    message = (
        "CSRF check failed: send the csrftoken cookie's value in the X-CSRFToken header, "
        "or authenticate with a bearer token instead of the session cookie."
    )
    body = {"data": None, "errors": [{"message": message, "extensions": {"code": "FORBIDDEN"}}]}
    return JsonResponse(body, status=403)
