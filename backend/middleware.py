"""Django's own middleware, with the hooks that do no I/O run on the event loop.

In an async stack Django's ``MiddlewareMixin`` hands every synchronous hook to a
worker thread (``sync_to_async``), whether or not it waits on anything: for the seven
Django middleware in ``settings.MIDDLEWARE`` that was 13 trips to a thread per request,
about 0.2 ms of CPU each (measured in process), for hooks that only read headers and set
cookies. The classes here are Django's, with an ``__acall__`` that calls the hooks on
the loop, and sends a hook to a thread, as Django does, when it is about to do I/O:
a session to save, messages to store, a CSRF secret kept in the session. Anything
else that touches the database from the loop raises Django's
``SynchronousOnlyOperation``, so a new hook that does I/O fails loudly in the tests
(``tests/backend/test_middleware_hops.py`` counts the trips and runs the session,
messages and CSRF paths).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import get_messages
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security
from django.utils.deprecation import MiddlewareMixin


async def call_hook(in_thread: bool, hook: Callable[..., Any], *args: Any) -> Any:
    """Call a synchronous hook on the loop, or in the request's thread if it does I/O."""
    if in_thread:
        return await sync_to_async(hook, thread_sensitive=True)(*args)
    return hook(*args)


class HooksOnTheLoop(MiddlewareMixin):
    """``MiddlewareMixin`` whose async path calls its hooks inline, unless told not to."""

    get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]

    def request_needs_thread(self, request: HttpRequest) -> bool:
        """Whether ``process_request`` will do I/O for this request."""
        return False

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        """Whether ``process_response`` will do I/O for this response."""
        return False

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        process_request = getattr(self, "process_request", None)
        if process_request is not None:
            response = await call_hook(self.request_needs_thread(request), process_request, request)
        response = response or await self.get_response(request)
        process_response = getattr(self, "process_response", None)
        if process_response is not None:
            in_thread = self.response_needs_thread(request, response)
            response = await call_hook(in_thread, process_response, request, response)
        return response


class SecurityMiddleware(HooksOnTheLoop, security.SecurityMiddleware):
    """Headers and the HTTPS redirect: no I/O."""


class CommonMiddleware(HooksOnTheLoop, common.CommonMiddleware):
    """The slash redirect and ``Content-Length``: no I/O."""


class XFrameOptionsMiddleware(HooksOnTheLoop, clickjacking.XFrameOptionsMiddleware):
    """One header: no I/O."""


class AuthenticationMiddleware(HooksOnTheLoop, auth.AuthenticationMiddleware):
    """Sets a lazy ``request.user``: the user is read when first used, in a thread."""


class SessionMiddleware(HooksOnTheLoop, sessions.SessionMiddleware):
    """The session is read when first used (in a thread); saved in one when changed."""

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class MessageMiddleware(HooksOnTheLoop, messages.MessageMiddleware):
    """Messages are stored (cookie or session) in a thread, when there are any."""

    def response_needs_thread(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        storage = get_messages(request)
        return bool(getattr(storage, "used", False) or getattr(storage, "added_new", False))


class CsrfViewMiddleware(HooksOnTheLoop, csrf.CsrfViewMiddleware):
    """The CSRF cookie and check: no I/O, unless the secret is kept in the session."""

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        if self.async_mode:  # Django adapts a coroutine ``process_view`` without a thread
            self.process_view = self._process_view_on_the_loop  # type: ignore[method-assign,assignment]

    def request_needs_thread(self, request: HttpRequest) -> bool:
        return bool(settings.CSRF_USE_SESSIONS)

    async def _process_view_on_the_loop(
        self,
        request: HttpRequest,
        callback: Callable[..., Any],
        callback_args: tuple[Any, ...],
        callback_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        return await call_hook(  # type: ignore[no-any-return]
            self.request_needs_thread(request),
            super().process_view,
            request,
            callback,
            callback_args,
            callback_kwargs,
        )
