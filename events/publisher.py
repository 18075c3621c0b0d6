"""Hands committed activities to the channel layer, once per activity."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

_server_loop_holder: list[asyncio.AbstractEventLoop] = []

# Every server process's listener joins this group (see ``schema.hub``).
ACTIVITY_GROUP = "pulse.activity"
ACTIVITY_MESSAGE_TYPE = "activity.published"


def activity_publish(activity_id: int) -> None:
    """Broadcast one committed activity's id; runs from ``transaction.on_commit``.

    Only the id travels (with the publish time, for the delivery-lag metric): the log
    row is the source of truth, and each process's listener reads it once. A failure
    here loses no data (the row is committed) and clients catch up by resuming from
    their cursor.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": ACTIVITY_MESSAGE_TYPE, "id": activity_id, "published_at": time.time()}
    loop = _server_loop()
    if loop is None:  # a management command, the shell, a test: wait for the send
        async_to_sync(layer.group_send)(ACTIVITY_GROUP, message)
        return
    # Inside the server: hand the send to its event loop and return, so the request's
    # database thread (shared by every request) does not wait for a busy loop.
    future = asyncio.run_coroutine_threadsafe(layer.group_send(ACTIVITY_GROUP, message), loop)
    future.add_done_callback(_report_failure)


def serve_from(loop: asyncio.AbstractEventLoop) -> None:
    """Name the server's event loop (the ASGI application does, on its first request):
    publishes from request threads are handed to it instead of waited for."""
    if not _server_loop_holder or _server_loop_holder[0] is not loop:
        _server_loop_holder[:] = [loop]


def _server_loop() -> asyncio.AbstractEventLoop | None:
    """The server's running event loop, when called from another thread."""
    loop = _server_loop_holder[0] if _server_loop_holder else None
    if loop is None or not loop.is_running() or loop.is_closed():
        return None
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    return None if running is loop else loop


def _report_failure(future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and (error := future.exception()) is not None:
        logger.error("Publishing an activity failed", exc_info=error)
