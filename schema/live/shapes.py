"""A shape: one distinct subscription, executed once per entry and audience.

A shape is a subscription document with its operation name and variables (all but a
variable that only picks the replay cursor). Its subscribers are grouped by viewer,
so the visibility rule (``events.visibility.audience``) is asked once per activity and
viewer, and the selection is executed once per entry and audience through
strawberry's own ``Schema.execute``: every validation rule and schema extension (limits,
error masking, the optimizer) that HTTP operations get.
"""

from __future__ import annotations

import collections
import json
from typing import TYPE_CHECKING, Any

from strawberry.types.graphql import OperationType

from events.visibility import Audience
from schema.live.streams import LiveStream

if TYPE_CHECKING:
    from strawberry.schema import BaseSchema as Schema

    from schema.live.engine import Subscriber

SUBSCRIPTION_ONLY = (OperationType.SUBSCRIPTION,)


class Shape:
    """One distinct subscription and its subscribers, grouped by viewer id."""

    def __init__(
        self,
        key: str,
        schema: Schema,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
        stream: LiveStream,
    ) -> None:
        self.key = key
        self.schema = schema
        self.query = query
        self.operation_name = operation_name
        self.variables = variables
        self.stream = stream
        self.viewers: dict[int | None, set[Subscriber]] = collections.defaultdict(set)
        self.executions = 0

    async def execute(self, entry: Any, audience: Audience) -> bytes:
        """The JSON execution result for one audience of one entry, encoded once."""
        self.executions += 1
        result = await self.schema.execute(
            self.query,
            variable_values=self.variables,
            context_value=self.stream.context(entry, audience),
            root_value=self.stream.root(entry),
            operation_name=self.operation_name,
            allowed_operation_types=SUBSCRIPTION_ONLY,
        )
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [error.formatted for error in result.errors]
        return encode_json(payload)


def shape_key(query: str, operation_name: str | None, variables: dict[str, Any]) -> str:
    """What makes two subscriptions one shape (equal variables in any key order)."""
    return json.dumps([query, operation_name, variables], sort_keys=True, default=str)


def encode_json(value: Any) -> bytes:
    """Compact JSON, as every transport sends it."""
    return json.dumps(value, separators=(",", ":")).encode()
