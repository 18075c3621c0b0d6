"""Opaque ids and cursors: Relay global ids for nodes, base64 cursors for pages and activities."""

from __future__ import annotations

from collections.abc import Iterable

from strawberry import relay
from strawberry.relay.types import PREFIX as CONNECTION_CURSOR_PREFIX

# The activity cursor belongs to the events app, whose management commands print and
# read it too (apps never import schema/); re-exported here for the GraphQL layer.
from events.cursors import decode_activity_cursor, encode_activity_cursor  # noqa: F401


def decode_pk(value: str, type_names: Iterable[str]) -> int | None:
    """Primary key inside a global id of one of ``type_names``; ``None`` if malformed."""
    try:
        global_id = relay.GlobalID.from_id(value)
    except (relay.GlobalIDValueError, ValueError, TypeError):
        return None
    if global_id.type_name not in set(type_names):
        return None
    node_id = global_id.node_id
    if not node_id.isascii() or not node_id.isdigit() or len(node_id) > 18:
        return None
    return int(node_id)


def encode_global_id(type_name: str, pk: int) -> str:
    """Global id of a node, as ``id`` fields show it."""
    return str(relay.GlobalID(type_name, str(pk)))


def decode_connection_cursor(cursor: str) -> int | None:
    """The offset in a Relay connection's cursor, or ``None`` when it is malformed."""
    if len(cursor) > 64:
        return None
    try:
        prefix, offset = relay.from_base64(cursor)
    except ValueError:
        return None
    if prefix != CONNECTION_CURSOR_PREFIX or not offset.isascii() or not offset.isdigit():
        return None
    return int(offset) if len(offset) <= 18 else None
