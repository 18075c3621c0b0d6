"""String inputs carry only text that can be stored: no unpaired surrogates, no NUL.

The GraphQL spec accepts only valid Unicode as ``String`` input, but graphql-core takes
any Python ``str``, and JSON variables may carry unpaired UTF-16 surrogates
(``"\\ud800"``). Those cannot be encoded as UTF-8, so hashing such a password or
writing such a status failed deep in a resolver as ``INTERNAL``. PostgreSQL text
cannot hold NUL (U+0000) either (Django's form fields refuse it for the same reason).
Checking where every ``String`` input is coerced refuses both, in variables and in
literals, as an invalid value before any resolver runs (``GRAPHQL_VALIDATION_FAILED``).
"""

from __future__ import annotations

import re
from typing import Any

from graphql import ConstValueNode, GraphQLError, GraphQLString, Node

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_coerce_string = GraphQLString.coerce_input_value
_coerce_string_literal = GraphQLString.coerce_input_literal


def storable_text(text: str, node: Node | None = None) -> str:
    """``text`` itself; a ``GraphQLError`` if it holds NUL or an unpaired surrogate."""
    if _UNSTORABLE.search(text):
        raise GraphQLError(
            "String cannot represent text with NUL characters or unpaired surrogates.", node
        )
    return text


def _coerce_storable_string(value: Any) -> str:
    return storable_text(_coerce_string(value))


def _coerce_storable_string_literal(node: ConstValueNode, *args: Any) -> str:
    assert _coerce_string_literal is not None
    return storable_text(_coerce_string_literal(node, *args), node)


def apply() -> None:
    """Install the check on graphql-core's ``String`` scalar (idempotent)."""
    GraphQLString.coerce_input_value = _coerce_storable_string  # type: ignore[method-assign]
    GraphQLString.coerce_input_literal = _coerce_storable_string_literal  # type: ignore[method-assign]
