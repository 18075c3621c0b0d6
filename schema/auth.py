"""Session-cookie authentication for what Django's middleware does not serve.

WebSocket handshakes and the HTTP live transports (SSE, multipart) reach Pulse's own
ASGI code, not Django's session middleware; they read the session cookie here.
"""

from __future__ import annotations

import collections
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest
from django.http.cookie import parse_cookie

from users.presence import presence_tracker

ANONYMOUS_USER = AnonymousUser()  # stateless: one instance serves every socket


def cookie_session_key(scope: dict[str, Any]) -> str | None:
    """The session cookie sent with a request or WebSocket handshake, if any."""
    cookie_header = b"; ".join(
        value for name, value in scope.get("headers", ()) if name == b"cookie"
    )
    return parse_cookie(cookie_header.decode("latin1")).get(settings.SESSION_COOKIE_NAME) or None


def session_user(session_key: str) -> User | AnonymousUser:
    """The user signed in to a session, or anonymous.

    Django's own ``get_user`` checks the session's backend and auth hash, so a session
    invalidated by a password change or logout gives the anonymous user.
    """
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return get_user(request)


class SocketsPerUser:
    """How many live connections (WebSockets, SSE and multipart streams) each signed-in
    user has open in this process, with a cap (``PULSE_MAX_SOCKETS_PER_USER``).

    Each claimed and released connection is reported to presence (``users.presence``),
    which only counts, without waiting: these run on the server's event loop."""

    def __init__(self) -> None:
        self.open: collections.Counter[int] = collections.Counter()

    def claim(self, user_id: int) -> bool:
        """Count one more socket for ``user_id``; ``False`` when at the cap."""
        if self.open[user_id] >= settings.PULSE_MAX_SOCKETS_PER_USER:
            return False
        self.open[user_id] += 1
        presence_tracker().connection_opened(user_id)
        return True

    def release(self, user_id: int) -> None:
        """Forget one closed socket of ``user_id``."""
        presence_tracker().connection_closed(user_id)
        self.open[user_id] -= 1
        if self.open[user_id] <= 0:
            del self.open[user_id]


SOCKETS_PER_USER = SocketsPerUser()
