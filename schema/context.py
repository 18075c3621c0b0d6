"""Who is asking: the viewer of an operation, over HTTP or WebSocket."""

from __future__ import annotations

from typing import Any, TypeAlias

from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest
from strawberry.types import Info as StrawberryInfo
from strawberry_django.auth.utils import get_current_user

from schema.errors import unauthenticated

Info: TypeAlias = StrawberryInfo[Any, None]


def viewer(info: Info) -> User | AnonymousUser:
    """The signed-in user (session cookie or bearer token), or ``AnonymousUser``."""
    user = get_current_user(info)
    if isinstance(user, User) and user.is_authenticated and user.is_active:
        return user
    return AnonymousUser()


def viewer_id(info: Info) -> int | None:
    """The signed-in user's primary key, or ``None`` when anonymous."""
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
