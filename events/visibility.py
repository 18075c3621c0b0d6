"""Who may see what: the one place PRIVATE is decided.

Queries and the history filter with :func:`visible_q`; replay and live delivery ask
:func:`audience` (``can_see`` is its yes/no form). Both state the same rule: a PUBLIC
item is for everyone, a PRIVATE one for its actor only.
"""

from __future__ import annotations

import enum
from typing import Protocol

from django.db.models import Q

from events.models import Visibility


class HasVisibility(Protocol):
    visibility: str
    actor_id: int


class Audience(enum.Enum):
    """How a viewer stands to an item it may see; what it is shown depends only on this.

    Live delivery executes a subscription once per activity and audience, never once
    per viewer: an ``OTHER`` viewer is shown what any signed-in non-actor may see.
    """

    ANONYMOUS = "anonymous"
    OTHER = "other"  # signed in, not the item's actor
    ACTOR = "actor"


def audience(viewer_id: int | None, item: HasVisibility) -> Audience | None:
    """The viewer's audience for one event or activity; ``None`` when it may not see it."""
    if viewer_id is not None and item.actor_id == viewer_id:
        return Audience.ACTOR
    if item.visibility != Visibility.PUBLIC:
        return None
    return Audience.ANONYMOUS if viewer_id is None else Audience.OTHER


def can_see(viewer_id: int | None, item: HasVisibility) -> bool:
    """Whether ``viewer_id`` may see one event or activity."""
    return audience(viewer_id, item) is not None


def visible_q(viewer_id: int | None) -> Q:
    """:func:`can_see` as a filter for events or activities (``None``: anonymous)."""
    public = Q(visibility=Visibility.PUBLIC)
    return public if viewer_id is None else public | Q(actor_id=viewer_id)
