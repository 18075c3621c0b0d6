"""String inputs carry only text that can be stored: no unpaired surrogates, no NUL.

The GraphQL spec accepts only valid Unicode as ``String`` input, but graphql-core takes
any Python ``str``, and JSON variables may carry unpaired UTF-16 surrogates
(``"\\ud800"``). Those cannot be encoded as UTF-8, so hashing such a password or
writing such a status failed deep in a resolver as ``INTERNAL``. PostgreSQL text
cannot hold NUL (U+0000) either (Django's form fields refuse it for the same reason).

:class:`StorableText` is a schema extension (this schema's, nothing process-wide): at
validation it refuses a document whose string literals, or a request whose variables,
hold either, so every operation over every transport is refused before any resolver
runs (``GRAPHQL_VALIDATION_FAILED``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError, StringValueNode, Visitor, visit
from strawberry.extensions import SchemaExtension

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "String cannot represent text with NUL characters or unpaired surrogates."


def is_storable(text: str) -> bool:
    """Whether ``text`` holds no NUL and no unpaired surrogate."""
    return _UNSTORABLE.search(text) is None


def _unstorable_value(value: Any) -> bool:
    """Whether any string in a decoded JSON value is unstorable (iterative: variables
    may nest as deep as the JSON decoder allows)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not is_storable(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


class _UnstorableLiterals(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.nodes: list[StringValueNode] = []

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if not is_storable(node.value):
            self.nodes.append(node)


@functools.lru_cache(maxsize=512)
def _has_unstorable_literal(query: str) -> bool:
    """Whether a document's text holds an unstorable character at all (a quick test,
    kept per document: live shapes run one document many times)."""
    return not is_storable(query) or "\\u" in query


class StorableText(SchemaExtension):
    """Refuse NUL and unpaired surrogates in string literals and in variables."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        error = None
        document, query = context.graphql_document, context.query
        if document is not None and (query is None or _has_unstorable_literal(query)):
            literals = _UnstorableLiterals()
            visit(document, literals)
            if literals.nodes:
                error = GraphQLError(MESSAGE, literals.nodes)
        if error is None and _unstorable_value(context.variables):
            error = GraphQLError(f"Variable values are invalid: {MESSAGE}")
        if error is not None and not context.pre_execution_errors:
            context.pre_execution_errors = [error]
        yield
