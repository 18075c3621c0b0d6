"""The shape of client messages on both GraphQL WebSocket subprotocols.

strawberry's handlers trust a decoded message's shape (a string ``type``, a string
``id``, an object ``payload``); a message of another shape could crash the socket's
handler or reach the executor with wrong types. The consumer checks each message here
first and closes the socket with 4400 (the graphql-ws protocol's "bad request") when it
is malformed, on both subprotocols.
"""

from __future__ import annotations

from typing import Any

from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

MALFORMED_MESSAGE_CLOSE_CODE = 4400

_OPERATION = "operation"  # id and payload {query, variables, operationName, extensions}
_ID = "id"  # id only
_PAYLOAD = "payload"  # optional object payload

CLIENT_MESSAGES: dict[str, dict[str, str]] = {
    GRAPHQL_TRANSPORT_WS_PROTOCOL: {
        "connection_init": _PAYLOAD,
        "ping": _PAYLOAD,
        "pong": _PAYLOAD,
        "subscribe": _OPERATION,
        "complete": _ID,
    },
    GRAPHQL_WS_PROTOCOL: {
        "connection_init": _PAYLOAD,
        "connection_terminate": _PAYLOAD,
        "start": _OPERATION,
        "stop": _ID,
    },
}


def malformed_reason(message: Any, protocol: str) -> str | None:
    """Why a decoded client message is malformed for ``protocol``, or ``None`` if not.

    The reason is short enough for a WebSocket close frame (at most 123 bytes).
    """
    if not isinstance(message, dict):
        return "Message must be a JSON object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "Message type must be a string"
    shape = CLIENT_MESSAGES.get(protocol, {}).get(kind)
    if shape is None:
        return f"Unknown message type: {kind[:60]}"
    if shape == _PAYLOAD:
        payload = message.get("payload")
        return None if payload is None or isinstance(payload, dict) else "Payload must be an object"
    operation_id = message.get("id")
    if not isinstance(operation_id, str) or not operation_id:
        return "Message id must be a non-empty string"
    if shape == _ID:
        return None
    return _operation_payload_reason(message.get("payload"))


def _operation_payload_reason(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return "Payload must be an object"
    if not isinstance(payload.get("query"), str):
        return "Payload query must be a string"
    for name, kind in (("variables", dict), ("operationName", str), ("extensions", dict)):
        value = payload.get(name)
        if value is not None and not isinstance(value, kind):
            return f"Payload {name} must be {'an object' if kind is dict else 'a string'}"
    return None
