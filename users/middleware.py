"""Bearer-token authentication for HTTP requests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse

from users.tokens import bearer_token, token_user


def _unauthenticated() -> JsonResponse:
    body = {
        "data": None,
        "errors": [
            {
                "message": "Invalid or expired token.",
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ],
    }
    return JsonResponse(body, status=401, headers={"WWW-Authenticate": "Bearer"})


class BearerTokenMiddleware:
    """Sign in requests carrying ``Authorization: Bearer <token>``.

    A valid token replaces ``request.user``; a bad or expired one is answered with
    ``UNAUTHENTICATED`` at once rather than silently treated as anonymous. CSRF
    protection is only needed when the browser sends a session cookie by itself, so it
    is waived for token requests and for requests without a session cookie.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]
    ) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        self._waive_csrf_without_session(request)
        if self.is_async:
            return self.__acall__(request)
        token = bearer_token(request.headers.get("Authorization"))
        if token is not None:
            user = token_user(token=token)
            if refused := self._sign_in(request, user, token):
                return refused
        return self.get_response(request)  # type: ignore[return-value]

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        token = bearer_token(request.headers.get("Authorization"))
        if token is not None:
            user = await sync_to_async(token_user)(token=token)
            if refused := self._sign_in(request, user, token):
                return refused
        return await self.get_response(request)  # type: ignore[misc]

    @staticmethod
    def _waive_csrf_without_session(request: HttpRequest) -> None:
        if settings.SESSION_COOKIE_NAME not in request.COOKIES:
            request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]

    @staticmethod
    def _sign_in(request: HttpRequest, user: User | None, token: str) -> JsonResponse | None:
        """Sign the request in as the token's user; the refusal when there is none."""
        if user is None:
            return _unauthenticated()
        request.user = user
        request.auth_token = token  # type: ignore[attr-defined]
        request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
        return None
