"""In-process sinks and subscribers for tests of the live engine (``schema.live``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from graphql import GraphQLError
from strawberry.types.execution import ExecutionResult, PreExecutionError

from schema.live.engine import Item, LiveEngine, Subscriber

SMALL = "subscription { activity { cursor message } }"


@dataclass
class Request:
    """What strawberry-django reads to find the viewer."""

    user: User | AnonymousUser


@dataclass
class Context:
    request: Request


@dataclass(eq=False)
class RecordingSink:
    """Records what the engine sends; ``fail_writes``/``fail_encoding`` inject faults."""

    name: str = "sink"
    encoding: Any = "recording"
    payloads: list[dict[str, Any]] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    results: list[ExecutionResult] = field(default_factory=list)
    rejected: list[PreExecutionError] = field(default_factory=list)
    errors: list[list[dict[str, Any]]] = field(default_factory=list)
    completed: bool = False
    aborted: bool = False
    open: bool = True
    fail_writes: bool = False
    fail_encoding: bool = False
    writes: int = 0

    def encode(self, items: Sequence[Item]) -> Any:
        if self.fail_encoding:
            raise RuntimeError("adapter bug")
        return list(items)

    async def write(self, encoded: Any) -> None:
        if self.fail_writes:
            raise ConnectionResetError("write failed")
        self.writes += 1
        for item in encoded:
            self.positions.append(item.position)
            self.payloads.append(json.loads(item.payload))

    def is_open(self) -> bool:
        return self.open

    async def send_result(self, result: ExecutionResult) -> None:
        self.results.append(result)

    async def reject(self, result: PreExecutionError) -> None:
        self.rejected.append(result)

    async def complete(self) -> None:
        self.completed = True

    async def fail(self, errors: list[GraphQLError]) -> None:
        self.errors.append([error.formatted for error in errors])  # type: ignore[misc]

    async def abort(self) -> None:
        self.aborted = True

    def messages(self) -> list[str]:
        return [payload["data"]["activity"]["message"] for payload in self.payloads]


async def subscribe(
    engine: LiveEngine,
    sink: RecordingSink,
    query: str,
    variables: dict[str, Any] | None = None,
    viewer: User | None = None,
) -> Subscriber | None:
    """Open one operation on the engine, as an adapter would."""
    user = viewer or AnonymousUser()
    return await engine.run(
        query=query,
        variables=variables,
        operation_name=None,
        context=Context(Request(user)),
        viewer_id=viewer.pk if viewer is not None else None,
        sink=sink,
    )
