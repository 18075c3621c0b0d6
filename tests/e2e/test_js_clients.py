"""The real client libraries against a real daphne: graphql-sse (both modes), Apollo Client.

Each runs under node from ``tests/js`` (``make test`` installs it with ``npm ci``) and
prints what it receives, one JSON object per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.clients import ahttp_gql, sign_up

pytestmark = pytest.mark.e2e

JS = Path(__file__).resolve().parents[1] / "js"
ACTIVITY = "subscription($after: String) { activity(after: $after) { cursor message } }"
POST = "mutation($s: String!) { createStatusChange(input: {status: $s}) { id } }"

names = (f"js{n}" for n in itertools.count())


class NodeClient:
    """One of ``tests/js``'s scripts, running, and the lines it printed."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self, timeout: float = 20) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert raw, f"the client exited ({await self._stderr()})"
        decoded: dict[str, Any] = json.loads(raw)
        assert "error" not in decoded and "timeout" not in decoded, decoded
        return decoded

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode()


@contextlib.asynccontextmanager
async def node_client(script: str, **env: str) -> AsyncIterator[NodeClient]:
    if not (JS / "node_modules").is_dir():
        pytest.fail("tests/js/node_modules is missing: run `make test` (it runs npm ci)")
    process = await asyncio.create_subprocess_exec(
        "node",
        str(JS / script),
        cwd=JS,
        env={**os.environ, "TIMEOUT_MS": "30000", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeClient(process)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def post(server: str, token: str, status: str) -> None:
    body = await ahttp_gql(server, POST, {"s": status}, token)
    assert "errors" not in body, body


async def replay_start(server: str) -> str:
    history = await ahttp_gql(server, "{ activities(first: 100) { cursor } }")
    cursor: str = history["data"]["activities"][-1]["cursor"]
    return cursor


@pytest.mark.parametrize("mode", ["distinct", "single"])
async def test_graphql_sse_client_replays_and_streams(server: str, mode: str) -> None:
    name = next(names)
    token = await asyncio.to_thread(sign_up, server, name)
    await post(server, token, "before")
    history = await ahttp_gql(server, "{ activities(first: 100) { cursor } }")
    after = history["data"]["activities"][-2]["cursor"]  # so "before" is replayed
    variables = json.dumps({"after": after})
    async with node_client(
        "sse-client.mjs",
        BASE=server,
        MODE=mode,
        TOKEN=token,
        QUERY=ACTIVITY,
        VARIABLES=variables,
        COUNT="3",
        SECOND_QUERY=ACTIVITY if mode == "single" else "",
        SECOND_COUNT="3",
    ) as client:
        per_op: dict[int, list[str]] = {}
        ready = 0

        async def read() -> None:
            nonlocal ready
            found = await client.line()
            ready += "ready" in found
            if "next" in found:
                message = found["next"]["data"]["activity"]["message"]
                per_op.setdefault(found.get("op", 1), []).append(message)

        while ready < (2 if mode == "single" else 1):
            await read()  # replayed items may come before the request is answered
        await post(server, token, "one")
        await post(server, token, "two")
        while sum(len(v) for v in per_op.values()) < 3 * ready:
            await read()
        expected = [f"{name} changed status to '{s}'" for s in ("before", "one", "two")]
        assert all(messages == expected for messages in per_op.values()), per_op
        assert len(per_op) == ready


async def test_apollo_client_subscribes_over_multipart(server: str) -> None:
    name = next(names)
    token = await asyncio.to_thread(sign_up, server, name)
    async with node_client(
        "apollo-multipart.mjs",
        BASE=server,
        TOKEN=token,
        QUERY=ACTIVITY,
        VARIABLES=json.dumps({"after": await replay_start(server)}),
        COUNT="2",
    ) as client:
        assert "ready" in await client.line()
        await post(server, token, "first")
        await post(server, token, "second")
        messages: list[str] = []
        while len(messages) < 2:
            found = await client.line()
            if "next" in found:
                messages.append(found["next"]["data"]["activity"]["message"])
        assert messages == [
            f"{name} changed status to 'first'",
            f"{name} changed status to 'second'",
        ]
