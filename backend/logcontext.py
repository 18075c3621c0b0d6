"""django-structlog's request logging, keeping the request id Pulse's server gave.

``request_started`` and ``request_finished`` lines, and every line logged while the
request runs, carry its ``request_id`` (and ``user_id`` once known). Under
``python -m backend.server`` the id is the one on the request's access-log line.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject
from django_structlog import signals
from django_structlog.app_settings import app_settings
from django_structlog.middlewares import RequestMiddleware
from django_structlog.middlewares.request import logger as request_logger

from backend.logconfig import scope_log_context
from backend.middleware import call_hook


def bind_server_request_id(sender: Any, request: HttpRequest, **kwargs: Any) -> None:
    """Use the server's request id (``backend.server``), when there is one, and the
    client's address as daphne gives it (``--proxy-headers`` behind a proxy), the one
    the login limits count (``schema.context.client_address``)."""
    structlog.contextvars.bind_contextvars(ip=request.META.get("REMOTE_ADDR") or None)
    scope = getattr(request, "scope", None)
    request_id = scope_log_context(scope).get("request_id") if scope is not None else None
    if request_id:
        structlog.contextvars.bind_contextvars(request_id=request_id)


class RequestLogMiddleware(RequestMiddleware):
    """django-structlog's ``RequestMiddleware`` with the server's request id, logging
    the path without its query string (which may hold secrets)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        signals.bind_extra_request_metadata.connect(
            bind_server_request_id, dispatch_uid="pulse.bind_server_request_id"
        )

    @staticmethod
    def format_request(request: HttpRequest) -> str:
        return f"{request.method} {request.path}"

    def handle_response(self, request: HttpRequest, response: HttpResponse) -> None:
        self.bind_user_id(request)
        request._log_context = structlog.contextvars.get_contextvars()  # type: ignore[attr-defined]
        super().handle_response(request, response)  # logs request_finished, clears the ids

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        # django-structlog's own ``__acall__``, with ``prepare`` and ``handle_response``
        # on the loop: they read the request, and only a user still to be read (from a
        # session) needs a thread (``backend.middleware``).
        await call_hook(user_unread(request), self.prepare, request)
        try:
            response: HttpResponse = await self.get_response(request)  # type: ignore[misc]
        except asyncio.CancelledError:
            request_logger.log(app_settings.REQUEST_CANCELLED_LOG_LEVEL, "request_cancelled")
            raise
        await call_hook(user_unread(request), self.handle_response, request, response)
        # Under ASGI the request has a task (and a context) of its own: keep its ids for
        # the lines logged after this middleware (django.request's 4xx/5xx warnings,
        # the access line).
        structlog.contextvars.bind_contextvars(**getattr(request, "_log_context", {}))
        return response


def user_unread(request: HttpRequest) -> bool:
    """Whether ``request.user`` may still have to be read from the session (a lazy
    user, set by ``AuthenticationMiddleware``; a bearer token's user is read already)."""
    return isinstance(getattr(request, "user", None), SimpleLazyObject)
