"""The hub's fan-out window: a quiet activity goes out at once, a stream in batches."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import override_settings

from events import services
from events.models import Visibility
from schema.hub import get_hub
from schema.live import SharedSubscription
from tests.schema.test_shared_execution import SHAPES, make_shape

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("close_worker_connections"),
]


@override_settings(PULSE_FANOUT_WINDOW_SECONDS=0.3)
async def test_a_stream_of_activities_is_fanned_out_in_batches(
    make_user: Callable[..., User],
) -> None:
    alice = await database_sync_to_async(make_user)("alice")
    hub = get_hub()
    batches: list[int] = []
    deliver = hub.fanout.deliver

    async def recording(rows: list) -> None:
        batches.append(len(rows))
        await deliver(rows)

    hub.fanout.deliver = recording  # type: ignore[method-assign]
    received: list[str] = []

    async def send_text(text: str) -> None:
        received.append(text)

    subscription = SharedSubscription(
        shape=make_shape(*SHAPES[2]),
        viewer_id=None,
        frame_prefix=b'{"id":"1","payload":',
        send_text=send_text,
        live=True,
    )
    await hub.subscribe_shared(subscription)
    try:
        post = database_sync_to_async(services.status_change_create)
        await post(actor=alice, status="alone", visibility=Visibility.PUBLIC)
        async with asyncio.timeout(5):
            while len(received) < 1:
                await asyncio.sleep(0.01)
        assert batches == [1]  # after a quiet spell: at once, by itself

        for n in range(10):  # further apart than a catch-up takes, closer than the window
            await post(actor=alice, status=f"stream {n}", visibility=Visibility.PUBLIC)
            await asyncio.sleep(0.03)
        async with asyncio.timeout(5):
            while len(received) < 11:
                await asyncio.sleep(0.01)
        assert sum(batches) == 11
        assert len(batches) < 11  # the stream went out in fewer, larger batches
        assert ["stream" in text for text in received].count(True) == 10
    finally:
        hub.unsubscribe_shared(subscription)
