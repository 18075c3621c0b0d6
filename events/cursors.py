"""Public cursors of the logs (activities, notifications): opaque, an id inside.

It lives in the events app (not in ``schema/``) because management commands print and
read the same cursors the GraphQL API does, and apps never import ``schema/``.
"""

from __future__ import annotations

import base64
import binascii

ACTIVITY_CURSOR_PREFIX = "activity:"
NOTIFICATION_CURSOR_PREFIX = "notification:"


def encode_activity_cursor(activity_id: int) -> str:
    """Opaque cursor of one activity."""
    return _encode(ACTIVITY_CURSOR_PREFIX, activity_id)


def decode_activity_cursor(cursor: str) -> int | None:
    """The activity id in a cursor, or ``None`` when it is malformed."""
    return _decode(ACTIVITY_CURSOR_PREFIX, cursor)


def encode_notification_cursor(notification_id: int) -> str:
    """Opaque cursor of one notification (its recipient's creation order)."""
    return _encode(NOTIFICATION_CURSOR_PREFIX, notification_id)


def decode_notification_cursor(cursor: str) -> int | None:
    """The notification id in a cursor, or ``None`` when it is malformed."""
    return _decode(NOTIFICATION_CURSOR_PREFIX, cursor)


def _encode(prefix: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{prefix}{pk}".encode()).decode()


def _decode(expected_prefix: str, cursor: str) -> int | None:
    if len(cursor) > 64:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        return None
    prefix, _, number = text.partition(":")
    if prefix + ":" != expected_prefix or not number.isdigit() or len(number) > 18:
        return None
    return int(number)
