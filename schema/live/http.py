"""What the HTTP live transports (SSE, multipart) share: auth, bodies, streaming.

Both authenticate like the rest of the API: a bearer token, or the session cookie of a
same-origin request; a bad token is 401 before any stream starts.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from strawberry.django.context import StrawberryDjangoContext
from strawberry.http.websocket_origin import is_same_origin, normalize_origin

from backend.logconfig import scope_log_context
from backend.server.extensions import http_stream_writer
from schema.auth import SOCKETS_PER_USER, cookie_session_key, session_user
from schema.errors import RATE_LIMITED, UNAUTHENTICATED
from users.tokens import bearer_token, token_user

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

MULTIPART_SUBSCRIPTIONS = "multipart/mixed"

logger = logging.getLogger(__name__)


def header(scope: Scope, name: str) -> str | None:
    """One request header (the last of its name), decoded as latin-1."""
    wanted = name.lower().encode()
    found = None
    for key, value in scope.get("headers", ()):
        if key == wanted:
            found = value.decode("latin-1")
    return found


def wants_multipart(scope: Scope) -> bool:
    """Whether the client subscribes the way Apollo Client's ``HttpLink`` does."""
    accept = (header(scope, "accept") or "").lower()
    return MULTIPART_SUBSCRIPTIONS in accept and "subscriptionspec" in accept


class Unauthenticated(Exception):
    """The request carried credentials that do not hold."""


@dataclass
class HTTPViewer:
    """Who a live HTTP request is from, and the context its operations run with."""

    user: User | AnonymousUser
    context: StrawberryDjangoContext

    @property
    def viewer_id(self) -> int | None:
        user = self.user
        return int(user.pk) if user.is_authenticated and user.is_active else None


async def authenticate(scope: Scope, body: bytes = b"") -> HTTPViewer:
    """The viewer of a request: its bearer token, else its session cookie when the
    request is same-origin, else anonymous. ``Unauthenticated`` for a bad token."""
    user: User | AnonymousUser = AnonymousUser()
    authorization = header(scope, "authorization")
    if authorization is not None:
        token = bearer_token(authorization)
        found = await database_sync_to_async(token_user)(token=token) if token else None
        if found is None:
            raise Unauthenticated("Invalid or expired token.")
        user = found
    elif (key := cookie_session_key(scope)) and same_origin(scope):
        user = await database_sync_to_async(session_user)(key)
    request = ASGIRequest(scope, io.BytesIO(body))
    request.user = user
    return HTTPViewer(user, StrawberryDjangoContext(request=request, response=HttpResponse()))


def same_origin(scope: Scope) -> bool:
    """Whether a cookie may authenticate the request: no ``Origin`` (not a cross-site
    browser request), the request's own origin, or one in ``CSRF_TRUSTED_ORIGINS``."""
    origin = header(scope, "origin")
    if origin is None:
        return True
    if header(scope, "sec-fetch-site") == "same-origin" or is_same_origin(
        origin, header(scope, "host")
    ):
        return True
    trusted = {normalize_origin(o) for o in settings.CSRF_TRUSTED_ORIGINS}
    return normalize_origin(origin) in trusted


TOO_MANY_STREAMS = "Too many open live connections for this user."


@contextlib.asynccontextmanager
async def counted_connection(
    viewer: HTTPViewer, send: Send, scope: Scope, transport: str
) -> AsyncIterator[bool]:
    """Count a live stream against its user's ``PULSE_MAX_SOCKETS_PER_USER`` (the same
    count as their WebSockets); past the cap, answer 429 and yield ``False``. The
    stream's end is logged (``live_stream_closed``): its access line comes only when a
    response finishes, which a stream the client closes never does."""
    user_id = viewer.viewer_id
    if user_id is not None and not SOCKETS_PER_USER.claim(user_id):
        await respond(send, 429, errors_body(TOO_MANY_STREAMS, RATE_LIMITED))
        yield False
        return
    started = time.monotonic()
    try:
        yield True
    finally:
        if user_id is not None:
            SOCKETS_PER_USER.release(user_id)
        logger.info(
            "live_stream_closed",
            extra={
                **scope_log_context(scope),
                "transport": transport,
                "user_id": user_id,
                "duration_ms": round((time.monotonic() - started) * 1000, 3),
            },
        )


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body; ``None`` if the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(
    send: Send,
    status: int,
    body: bytes = b"",
    content_type: str | None = "application/json",
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A whole, non-streaming response."""
    all_headers = [*headers]
    if content_type is not None:
        all_headers.append((b"content-type", content_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


def errors_body(message: str, code: str, **extensions: Any) -> bytes:
    """A GraphQL response holding one coded error and no data."""
    error = {"message": message, "extensions": {"code": code, **extensions}}
    return json.dumps({"data": None, "errors": [error]}).encode()


async def respond_unauthenticated(send: Send, message: str) -> None:
    await respond(send, 401, errors_body(message, UNAUTHENTICATED))


def live_schema() -> Any:
    """The root schema (imported late: it imports the adapters' modules)."""
    from schema.schema import schema

    return schema


def result_json(result: Any) -> bytes:
    """An execution result as the HTTP live transports send it."""
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [error.formatted for error in result.errors]
    return json.dumps(body, separators=(",", ":")).encode()


def parse_params(method: str, scope: Scope, body: bytes) -> dict[str, Any] | str:
    """A GraphQL request's ``query``, ``variables``, ``operationName`` and ``extensions``,
    from a JSON body or (GET) the URL; a string says why they are unusable."""
    if method == "GET":
        from urllib.parse import parse_qs

        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        params: dict[str, Any] = {k: v[-1] for k, v in query.items()}
        for name in ("variables", "extensions"):
            if name in params:
                try:
                    params[name] = json.loads(params[name])
                except ValueError:
                    return f"{name} must be JSON"
    else:
        try:
            params = json.loads(body or b"null")
        except (ValueError, RecursionError):
            return "Unable to parse request body as JSON"
        if not isinstance(params, dict):
            return "The request body must be a JSON object"
    if not isinstance(params.get("query"), str):
        return "query must be a string"
    for name in ("variables", "extensions"):
        if params.get(name) is not None and not isinstance(params[name], dict):
            return f"{name} must be an object"
    operation_name = params.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        return "operationName must be a string"
    try:
        for text in (params["query"], operation_name or ""):
            text.encode()
    except UnicodeEncodeError:
        return "query and operationName must be valid Unicode"
    return params


class ResponseStream:
    """A streaming HTTP response: chunks go out in the order written, until finished.

    ``closed`` is set once the client is gone or the response ended; writes after it
    are dropped (the engine ends the subscriber as ``gone``).
    """

    def __init__(self, send: Send, scope: Scope) -> None:
        self._send = send
        self.closed = False
        # Under Pulse's server, chunks go through its capped writer (a client that stops
        # reading is dropped past PULSE_WS_MAX_UNSENT_BYTES); elsewhere the ASGI way.
        self._writer = http_stream_writer(scope)

    async def start(self, content_type: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        await self._send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),  # nginx: pass each chunk on at once
                    *headers,
                ],
            }
        )

    async def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self._writer is None:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})
        elif not self._writer["write"](data):
            self.closed = True  # gone, or dropped for not reading

    async def finish(self, data: bytes = b"") -> None:
        if not self.closed:
            self.closed = True
            if self._writer is not None:
                self._writer["done"]()
            await self._send({"type": "http.response.body", "body": data})


async def until_disconnected(receive: Receive) -> None:
    """Wait for the client to go away (what it sends meanwhile is ignored)."""
    while (await receive())["type"] != "http.disconnect":
        pass
