"""Who may see what: the one place PRIVATE is decided.

Used by queries, the history, replay and live delivery alike.
"""

from __future__ import annotations

from typing import Protocol

from django.db.models import Q

from events.models import Visibility


class HasVisibility(Protocol):
    visibility: str
    actor_id: int


def visible_q(viewer_id: int | None) -> Q:
    """Filter for events or activities ``viewer_id`` may see (``None``: anonymous)."""
    public = Q(visibility=Visibility.PUBLIC)
    return public if viewer_id is None else public | Q(actor_id=viewer_id)


def can_see(viewer_id: int | None, item: HasVisibility) -> bool:
    """Whether ``viewer_id`` may see one event or activity."""
    return item.visibility == Visibility.PUBLIC or (
        viewer_id is not None and item.actor_id == viewer_id
    )
