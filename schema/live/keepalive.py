"""Keep-alive for every live connection of a process, from one task.

Each connection registers once acknowledged; every ``PULSE_KEEPALIVE_SECONDS`` the
ticker sends each its protocol's keep-alive (a ``ping``, a ``ka``, an SSE comment, an
empty multipart part) and closes the ones that said nothing for three intervals where
the protocol expects an answer. One task for all, so an idle connection costs no timer.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from typing import Protocol

from django.conf import settings

logger = logging.getLogger(__name__)

SILENT_INTERVALS = 3  # a connection that must answer and says nothing this long is closed
SLICE = 200  # keep-alives sent between returns to the event loop
SPREAD = 0.5  # of the interval, over which one round of keep-alives is spread


class KeptAlive(Protocol):
    @property
    def last_heard(self) -> float | None:
        """``loop.time()`` when the client last sent anything; ``None``: it need not answer."""

    async def send_keepalive(self) -> None:
        """Send the protocol's keep-alive message."""

    async def close_silent(self) -> None:
        """Close the connection: the client stopped answering."""


class KeepAliveTicker:
    """The process's keep-alive task and the connections it serves."""

    def __init__(self) -> None:
        self.connections: weakref.WeakSet[KeptAlive] = weakref.WeakSet()
        self._task: asyncio.Task[None] | None = None

    def add(self, connection: KeptAlive) -> None:
        self.connections.add(connection)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._tick(), name="pulse-keepalive", context=contextvars.Context()
            )

    def discard(self, connection: KeptAlive) -> None:
        self.connections.discard(connection)

    async def _tick(self) -> None:
        """Every interval, one round: spread over part of the interval in slices, so ten
        thousand pings (and their pongs) never hold up the fan-out in one burst."""
        loop = asyncio.get_running_loop()
        while self.connections:
            interval = settings.PULSE_KEEPALIVE_SECONDS
            await asyncio.sleep(interval)
            connections = list(self.connections)
            slices = max(1, -(-len(connections) // SLICE))
            pause = interval * SPREAD / slices if slices > 1 else 0.0
            for start in range(0, len(connections), SLICE):
                if start:
                    await asyncio.sleep(pause)
                await self._keep(connections[start : start + SLICE], loop.time(), interval)

    async def _keep(self, connections: list[KeptAlive], now: float, interval: float) -> None:
        for connection in connections:
            if connection not in self.connections:
                continue  # closed since the round began
            heard = connection.last_heard
            try:
                if heard is not None and now - heard > SILENT_INTERVALS * interval:
                    self.connections.discard(connection)
                    await connection.close_silent()
                else:
                    await connection.send_keepalive()
            except Exception:  # one connection's failure is its own
                self.connections.discard(connection)
                logger.warning("Keep-alive failed for a connection", exc_info=True)


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, KeepAliveTicker] = (
    weakref.WeakKeyDictionary()
)


def keepalive_ticker() -> KeepAliveTicker:
    """The keep-alive ticker of the running event loop."""
    loop = asyncio.get_running_loop()
    ticker = _tickers.get(loop)
    if ticker is None:
        ticker = _tickers[loop] = KeepAliveTicker()
    return ticker
