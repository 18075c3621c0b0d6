"""Who is asking: the viewer of an operation, or the audience a live shape runs for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest
from strawberry.types import Info as StrawberryInfo
from strawberry_django.auth.utils import get_current_user

from schema.errors import unauthenticated

Info: TypeAlias = StrawberryInfo[Any, None]


@dataclass(frozen=True)
class AudienceContext:
    """The context of a live shape executed once for an audience (``schema.live``).

    It stands for everyone in one ``events.visibility.Audience`` of an activity, not
    for a user: ``viewer_id`` is the actor's id for the actor's audience, else ``None``
    (so fields that depend on who exactly is looking resolve as for anyone there).
    """

    viewer_id: int | None
    signed_in: bool


def viewer(info: Info) -> User | AnonymousUser:
    """The signed-in user (session cookie or bearer token), or ``AnonymousUser``."""
    if isinstance(info.context, AudienceContext):
        return AnonymousUser()  # an audience, not a user: nothing to act as
    user = get_current_user(info)
    if isinstance(user, User) and user.is_authenticated and user.is_active:
        return user
    return AnonymousUser()


def viewer_id(info: Info) -> int | None:
    """The signed-in user's primary key, or ``None`` when anonymous (or not known)."""
    if isinstance(info.context, AudienceContext):
        return info.context.viewer_id
    user = viewer(info)
    return user.pk if user.is_authenticated else None


def require_user(info: Info) -> User:
    """The signed-in user; ``UNAUTHENTICATED`` otherwise."""
    user = viewer(info)
    if not isinstance(user, User):
        raise unauthenticated()
    return user


def client_address(info: Info) -> str | None:
    """The client's IP address (as daphne reports it; see ``--proxy-headers``)."""
    request = info.context.request
    if isinstance(request, HttpRequest):
        return request.META.get("REMOTE_ADDR") or None
    client = getattr(request, "scope", {}).get("client")  # a Channels consumer
    return str(client[0]) if client else None
