"""Server processes failing: SIGKILL and restart, SIGTERM, and slow consumers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.clients import (
    TRANSPORT_WS,
    WSClient,
    ahttp_gql,
    sign_up,
    subscriptions_active,
    until_subscribed,
)
from tests.e2e.servers import LOOPBACK, ROOT, DaphneServer, daphne_server, new_database

pytestmark = pytest.mark.e2e

ACTIVITY = "subscription($after: String) { activity(after: $after) { cursor message } }"
POST = "mutation($s: String!) { createStatusChange(input: {status: $s}) { id } }"


async def test_sigkill_mid_stream_then_restart_misses_nothing(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    database = new_database(postgres_url, f"pulse_kill_{time.monotonic_ns()}", tmp_path)
    env = {"REDIS_URL": redis_url}
    with (
        daphne_server(tmp_path, database, env) as victim,
        daphne_server(tmp_path, database, env) as other,
    ):
        token = await asyncio.to_thread(sign_up, other.base, "crash")
        socket = await WSClient.open(victim.base, TRANSPORT_WS)
        active = await subscriptions_active(victim.base)
        await socket.subscribe("1", ACTIVITY, {"after": None})
        await until_subscribed(victim.base, active + 1)
        received: list[str] = []

        async def write(n: int) -> None:
            body = await ahttp_gql(other.base, POST, {"s": f"#{n}"}, token)
            assert "errors" not in body, body

        for n in range(5):
            await write(n)
        received += [(await socket.next_data())["activity"]["message"] for _ in range(5)]
        cursor = None

        victim.stop(signal.SIGKILL)
        killed = time.monotonic()
        for n in range(5, 10):  # written through the other process while this one is down
            await write(n)
        victim.start()
        restarted = time.monotonic() - killed

        # The client kept its last cursor; it comes from the log, not from the dead socket.
        history = await ahttp_gql(victim.base, "{ activities(first: 100) { cursor message } }")
        by_message = {a["message"]: a["cursor"] for a in history["data"]["activities"]}
        cursor = by_message[received[-1]]
        resumed = await WSClient.open(victim.base, TRANSPORT_WS)
        await resumed.subscribe("2", ACTIVITY, {"after": cursor})
        for n in range(10, 12):
            await write(n)
        received += [(await resumed.next_data())["activity"]["message"] for _ in range(7)]
        assert received == [f"crash changed status to '#{n}'" for n in range(12)]
        assert await resumed.nothing_within(0.3)
        print(f"SIGKILL: restarted and serving in {restarted:.2f}s; nothing missed")
        await resumed.close()


async def test_sigterm_closes_sockets_with_1001_and_exits_cleanly(tmp_path: Path) -> None:
    with daphne_server(tmp_path) as server:
        sockets = [await WSClient.open(server.base, TRANSPORT_WS) for _ in range(3)]
        active = await subscriptions_active(server.base)
        for n, client in enumerate(sockets):
            await client.subscribe(str(n), ACTIVITY)
        await until_subscribed(server.base, active + len(sockets))
        stopping = time.monotonic()
        status = await asyncio.to_thread(server.stop, signal.SIGTERM)
        codes = []
        for client in sockets:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(client.ws.recv(), 5)
            codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
        assert codes == [1001, 1001, 1001]
        assert status == 0
        print(f"SIGTERM: all sockets closed with 1001, exit in {time.monotonic() - stopping:.2f}s")


def _publish_burst(server: DaphneServer, count: int, message_bytes: int) -> None:
    """Append ``count`` public activities straight to the log and ring the doorbell once."""
    code = f"""
from django.contrib.auth.models import User
from events.models import Activity
from events.publisher import activity_publish
actor = User.objects.get(username="burst")
rows = [Activity(kind="STATUS_CHANGE", verb="CREATED", actor=actor,
                 message=f"{{n:06d}} " + "x" * {message_bytes}) for n in range({count})]
Activity.objects.bulk_create(rows, batch_size=1000)
activity_publish(Activity.objects.latest("id").pk)
"""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=server.env, check=True
    )


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _slow_consumer_scenario(tmp_path: Path, count: int, cap_bytes: int) -> dict[str, float]:
    env = {"PULSE_WS_MAX_UNSENT_BYTES": str(cap_bytes)}
    with daphne_server(tmp_path, env=env) as server:
        assert server.process is not None
        await asyncio.to_thread(sign_up, server.base, "burst")
        start = (await ahttp_gql(server.base, "{ activities(first: 100) { cursor } }"))["data"][
            "activities"
        ][-1]["cursor"]

        fast = await WSClient.open(server.base, TRANSPORT_WS)
        active = await subscriptions_active(server.base)
        await fast.subscribe("fast", ACTIVITY, {"after": start})
        # The slow client: a tiny receive buffer and a one-message queue, then it stops reading.
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect((LOOPBACK, server.port))
        slow_ws = await connect(
            server.base.replace("http", "ws", 1) + "/graphql/",
            sock=raw,
            subprotocols=[TRANSPORT_WS],
            max_queue=1,
        )
        await slow_ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await slow_ws.recv())["type"] == "connection_ack"
        payload = {"query": ACTIVITY, "variables": {"after": start}}
        await slow_ws.send(json.dumps({"id": "slow", "type": "subscribe", "payload": payload}))
        await until_subscribed(server.base, active + 2)

        baseline = _rss_kib(server.process.pid)
        peak = baseline
        burst = asyncio.create_task(asyncio.to_thread(_publish_burst, server, count, 1000))
        fast_cursors: list[str] = []
        began = time.monotonic()
        while len(fast_cursors) < count:
            fast_cursors.append((await fast.next_data(timeout=60))["activity"]["cursor"])
            if len(fast_cursors) % 500 == 0:
                peak = max(peak, _rss_kib(server.process.pid))
        fast_seconds = time.monotonic() - began
        await burst
        peak = max(peak, _rss_kib(server.process.pid))

        # The slow client reads again: what was buffered, then the close frame.
        slow_cursors: list[str] = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = json.loads(await asyncio.wait_for(slow_ws.recv(), 30))
                slow_cursors.append(message["payload"]["data"]["activity"]["cursor"])
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1013
        assert "last cursor" in closed.value.rcvd.reason
        assert len(slow_cursors) < count

        # It resumes from its last cursor and gets the rest, nothing twice.
        resumed = await WSClient.open(server.base, TRANSPORT_WS)
        await resumed.subscribe("again", ACTIVITY, {"after": slow_cursors[-1]})
        while len(slow_cursors) < count:
            slow_cursors.append((await resumed.next_data(timeout=60))["activity"]["cursor"])
        assert slow_cursors == fast_cursors
        assert await resumed.nothing_within(0.3)
        await resumed.close()
        await fast.close()
        return {
            "rss_growth_mib": (peak - baseline) / 1024,
            "fast_seconds": fast_seconds,
            "cap_mib": cap_bytes / 2**20,
        }


async def test_slow_consumer_is_closed_with_1013_and_resumes(tmp_path: Path) -> None:
    result = await _slow_consumer_scenario(tmp_path, count=3000, cap_bytes=256 * 1024)
    print(f"slow consumer (3,000 x 1 KB): {result}")
    # 3 MB were published; the slow socket's backlog is capped at 256 KiB.
    assert result["rss_growth_mib"] < 32


@pytest.mark.soak
async def test_slow_consumer_soak_50k(tmp_path: Path) -> None:
    result = await _slow_consumer_scenario(tmp_path, count=50_000, cap_bytes=4 * 2**20)
    print(f"slow consumer soak (50,000 x 1 KB): {result}")
    # ~50 MB of frames were published; an unbounded buffer would hold all of them.
    assert result["rss_growth_mib"] < 32


def test_pid_helper_reads_this_process() -> None:
    assert _rss_kib(os.getpid()) > 0


async def test_an_sse_client_that_stops_reading_is_dropped_and_others_get_everything(
    tmp_path: Path,
) -> None:
    from tests.e2e.clients import event_stream

    count, cap = 3000, 256 * 1024
    with daphne_server(tmp_path, env={"PULSE_WS_MAX_UNSENT_BYTES": str(cap)}) as server:
        assert server.process is not None
        await asyncio.to_thread(sign_up, server.base, "burst")
        query = "subscription { activity { cursor message } }"
        active = await subscriptions_active(server.base)
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect((LOOPBACK, server.port))
        target = "/graphql/stream?query=" + query.replace(" ", "%20").replace("{", "%7B").replace(
            "}", "%7D"
        )
        raw.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {LOOPBACK}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        async with event_stream(server.base, params={"query": query}) as reader:
            await until_subscribed(server.base, active + 2)  # the stalled one and the reader
            baseline = _rss_kib(server.process.pid)
            burst = asyncio.create_task(asyncio.to_thread(_publish_burst, server, count, 1000))
            cursors = [(await reader.next_data(timeout=60)).id for _ in range(count)]
            await burst
            assert len(set(cursors)) == count
            growth_mib = (_rss_kib(server.process.pid) - baseline) / 1024
        # The stalled client was dropped: reading what the kernel kept ends in a reset or EOF.
        raw.settimeout(10)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := raw.recv(65536):
                received += len(chunk)
        raw.close()
        assert received < count * 1000
        metrics = (await asyncio.to_thread(urllib_get, server.base + "/metrics")).decode()
        assert 'pulse_slow_consumer_drops_total{reason="unsent_bytes"} 1.0' in metrics
        print(f"SSE slow consumer: dropped; server RSS +{growth_mib:.1f} MiB for 3 MB published")
        assert growth_mib < 32


def urllib_get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
        body: bytes = response.read()
        return body
