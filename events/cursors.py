"""The public cursor of an activity: opaque to clients, the log's id inside.

It lives in the events app (not in ``schema/``) because management commands print and
read the same cursors the GraphQL API does, and apps never import ``schema/``.
"""

from __future__ import annotations

import base64
import binascii

ACTIVITY_CURSOR_PREFIX = "activity:"


def encode_activity_cursor(activity_id: int) -> str:
    """Opaque cursor of one activity."""
    return base64.urlsafe_b64encode(f"{ACTIVITY_CURSOR_PREFIX}{activity_id}".encode()).decode()


def decode_activity_cursor(cursor: str) -> int | None:
    """The activity id in a cursor, or ``None`` when it is malformed."""
    if len(cursor) > 64:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    prefix, _, number = text.partition(":")
    if prefix + ":" != ACTIVITY_CURSOR_PREFIX or not number.isdigit() or len(number) > 18:
        return None
    return int(number)
