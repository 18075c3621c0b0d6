"""Hands committed activities to the channel layer, once per activity."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

_server_loop_holder: list[asyncio.AbstractEventLoop] = []
_background: set[asyncio.Future[None]] = set()

# Every server process's listener joins this group (see ``schema.live.hub``).
ACTIVITY_GROUP = f"{settings.PULSE_REDIS_NAMESPACE}.activity"
ACTIVITY_MESSAGE_TYPE = "activity.published"


def activity_publish(activity_id: int) -> None:
    """Broadcast one committed activity's id; runs from ``transaction.on_commit``.

    Only the id travels (with the publish time, for the delivery-lag metric): the log
    row is the source of truth, and each process's listener reads it once. A failure
    here loses no data (the row is committed) and clients catch up by resuming from
    their cursor.
    """
    group_publish(
        ACTIVITY_GROUP,
        {"type": ACTIVITY_MESSAGE_TYPE, "id": activity_id, "published_at": time.time()},
    )


def group_publish(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to a channel-layer group, from any thread or the server loop.

    From a request's thread the send is handed to the server's event loop and not
    waited for (the database thread, shared by every request, must not wait on a busy
    loop); elsewhere (a command, the shell, a test) it is waited for. Failures are
    logged, never raised: every group message here is a doorbell or a state change
    whose truth is stored elsewhere.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _server_loop()
    if loop is None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: wait for the send
            try:
                async_to_sync(layer.group_send)(group, message)
            except Exception:
                logger.exception("Publishing to %s failed", group)
            return
        # On a running loop that is not the server's (a test's): send in the background.
        task = asyncio.ensure_future(layer.group_send(group, message))
        task.add_done_callback(_report_task_failure)
        _background.add(task)
        task.add_done_callback(_background.discard)
        return
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
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
        logger.error("Publishing to a group failed", exc_info=error)


def _report_task_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("Publishing to a group failed", exc_info=error)
