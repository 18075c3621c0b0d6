"""Hands committed activities to the channel layer, once per activity."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

# Every server process's listener joins this group (see ``schema.hub``).
ACTIVITY_GROUP = "pulse.activity"
ACTIVITY_MESSAGE_TYPE = "activity.published"


def activity_publish(activity_id: int) -> None:
    """Broadcast one committed activity's id; runs from ``transaction.on_commit``.

    Only the id travels: the log row is the source of truth, and each process's
    listener reads it once. A failure here loses no data (the row is committed) and
    clients catch up by resuming from their cursor.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(
        ACTIVITY_GROUP, {"type": ACTIVITY_MESSAGE_TYPE, "id": activity_id}
    )
