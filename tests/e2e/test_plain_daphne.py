"""Plain ``daphne asgi:application``, as the contract names it: everything works, and
the process says once, at start-up, what only ``python -m backend.server`` gives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backend.server.plain_daphne import PLAIN_DAPHNE_WARNING
from tests.e2e.clients import (
    TRANSPORT_WS,
    WSClient,
    event_stream,
    sign_up,
    subscriptions_active,
    until_subscribed,
)
from tests.e2e.servers import daphne_server

pytestmark = pytest.mark.e2e

ACTIVITY = "subscription { activity { message } }"


async def test_plain_daphne_serves_every_transport_and_warns_once(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "pulse").mkdir()
    with daphne_server(tmp_path / "plain", plain_daphne=True) as plain:
        socket = await WSClient.open(plain.base, TRANSPORT_WS)
        active = await subscriptions_active(plain.base)
        await socket.subscribe("1", ACTIVITY)
        async with event_stream(plain.base, params={"query": ACTIVITY}) as sse:
            await until_subscribed(plain.base, active + 2)
            await asyncio.to_thread(sign_up, plain.base, "plain")
            assert (await socket.next_data())["activity"]["message"] == "plain joined"
            assert (await sse.next_data()).data["data"]["activity"]["message"] == "plain joined"
        await socket.close()
        log = plain.log_path.read_text()
    assert log.count(PLAIN_DAPHNE_WARNING) == 1
    assert "python -m backend.server" in PLAIN_DAPHNE_WARNING

    with daphne_server(tmp_path / "pulse") as pulse:
        await asyncio.to_thread(sign_up, pulse.base, "pulse")
        assert PLAIN_DAPHNE_WARNING not in pulse.log_path.read_text()
