"""The same invalid and hostile subscription documents, over every transport, get the
same error codes: HTTP, graphql-transport-ws, legacy graphql-ws, SSE and multipart.

Every transport runs documents through strawberry's own pipeline (validation rules,
limits, error masking), so a rule cannot hold on one path and not on another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.conf import settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.clients import LEGACY_WS, TRANSPORT_WS, event_stream, multipart_subscription

pytestmark = pytest.mark.e2e

VALIDATION = "GRAPHQL_VALIDATION_FAILED"
CLOSED_4400 = "close 4400"  # graphql-transport-ws closes the socket for unparsable documents


def nested_targets(depth: int) -> str:
    selection = "id"
    for _ in range(depth):
        selection = f"... on Comment {{ target {{ {selection} }} }}"
    return f"subscription {{ activity {{ event {{ {selection} }} }} }}"


def many_tokens() -> str:
    filler = " ".join("__typename" for _ in range(settings.PULSE_MAX_TOKENS))
    return "subscription Live { activity { cursor } } query Filler { " + filler + " }"


@dataclass(frozen=True)
class Case:
    name: str
    query: str
    variables: dict[str, Any] | None
    code: str
    operation_name: str | None = None
    transport_ws: str | None = None  # where graphql-transport-ws must answer otherwise
    streams_only: bool = False  # refused before its resolver runs over plain HTTP


CASES = [
    Case("unknown field", "subscription { activity { nope } }", None, VALIDATION),
    Case("too deep", nested_targets(settings.PULSE_MAX_QUERY_DEPTH), None, VALIDATION),
    Case(
        "too many aliases",
        "subscription { activity { "
        + " ".join(f"a{n}: cursor" for n in range(settings.PULSE_MAX_ALIASES + 1))
        + " } }",
        None,
        VALIDATION,
    ),
    Case("too many tokens", many_tokens(), None, VALIDATION, "Live", CLOSED_4400),
    Case(
        "two root fields",
        "subscription { a: activity { cursor } b: activity { cursor } }",
        None,
        VALIDATION,
    ),
    Case(
        "wrong enum value",
        "subscription($k: [ActivityKind!]) { activity(kinds: $k) { cursor } }",
        {"k": ["NOPE"]},
        VALIDATION,
    ),
    Case(
        "NUL in a string",
        "subscription($a: String) { activity(after: $a) { cursor } }",
        {"a": "x\u0000y"},
        VALIDATION,
    ),
    Case(
        "lone surrogate in a string",
        "subscription($a: String) { activity(after: $a) { cursor } }",
        {"a": "\ud800"},
        VALIDATION,
    ),
    Case(
        "unknown operation",
        "subscription Live { activity { cursor } }",
        None,
        VALIDATION,
        "Dead",
    ),
    Case(
        "malformed cursor",
        'subscription { activity(after: "not a cursor") { cursor } }',
        None,
        "BAD_USER_INPUT",
        streams_only=True,
    ),
]


def codes_of(errors: Any) -> list[str]:
    errors = errors if isinstance(errors, list) else [errors]
    return sorted({error["extensions"]["code"] for error in errors})


def dumps(value: Any) -> str:
    # JSON escapes keep lone surrogates intact on the wire, as a hostile client sends them.
    return json.dumps(value, ensure_ascii=True)


async def over_http(server: str, case: Case) -> list[str]:
    body = {"query": case.query, "variables": case.variables, "operationName": case.operation_name}
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        response = await client.post(
            "/graphql/", content=dumps(body), headers={"Content-Type": "application/json"}
        )
    return codes_of(response.json()["errors"])


async def over_websocket(server: str, case: Case, protocol: str) -> list[str]:
    url = server.replace("http", "ws", 1) + "/graphql/"
    async with connect(url, subprotocols=[protocol]) as ws:  # type: ignore[list-item]
        await ws.send(dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        kind = "subscribe" if protocol == TRANSPORT_WS else "start"
        payload = {"query": case.query, "variables": case.variables}
        if case.operation_name:
            payload["operationName"] = case.operation_name
        await ws.send(dumps({"id": "1", "type": kind, "payload": payload}))
        try:
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "error":
                    return codes_of(message["payload"])
                if message["type"] in {"next", "data"} and "errors" in message["payload"]:
                    return codes_of(message["payload"]["errors"])
        except ConnectionClosed as closed:
            return [f"close {closed.rcvd.code if closed.rcvd else None}"]


async def over_sse(server: str, case: Case) -> list[str]:
    body = {"query": case.query, "variables": case.variables, "operationName": case.operation_name}
    async with event_stream(
        server, "POST", content=dumps(body), headers={"Content-Type": "application/json"}
    ) as stream:
        found = await stream.next_data()
        assert (await stream.next_event()).event == "complete"
        return codes_of(found.data["errors"])


async def over_multipart(server: str, case: Case) -> list[str]:
    async with multipart_subscription(
        server, case.query, case.variables, operation_name=case.operation_name
    ) as stream:
        part = await stream.next_part()
        return codes_of(part["payload"]["errors"])


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_every_transport_refuses_alike(server: str, case: Case) -> None:
    answers = {
        "graphql-transport-ws": await over_websocket(server, case, TRANSPORT_WS),
        "graphql-ws": await over_websocket(server, case, LEGACY_WS),
        "sse": await over_sse(server, case),
        "multipart": await over_multipart(server, case),
    }
    expected = {name: [case.code] for name in answers}
    if case.transport_ws is not None:
        expected["graphql-transport-ws"] = [case.transport_ws]
    http = await over_http(server, case)
    assert http == ([VALIDATION] if case.streams_only else [case.code])
    assert answers == expected
