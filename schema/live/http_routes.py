"""Routes the HTTP live transports before Django; everything else goes on to it.

``/graphql/stream`` is GraphQL over SSE (``schema.live.sse``); a ``POST /graphql/`` that
accepts ``multipart/mixed;subscriptionSpec=1.0`` is a multipart subscription
(``schema.live.multipart``).
"""

from __future__ import annotations

from schema.live.http import ASGIApp, Receive, Scope, Send, wants_multipart
from schema.live.multipart import serve_multipart
from schema.live.sse import serve_sse

SSE_PATHS = frozenset({"/graphql/stream", "/graphql/stream/"})
GRAPHQL_PATHS = frozenset({"/graphql/", "/graphql"})


class LiveHTTP:
    """An ASGI middleware answering the HTTP live transports itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path in SSE_PATHS:
                await serve_sse(scope, receive, send)
                return
            if path in GRAPHQL_PATHS and scope["method"] == "POST" and wants_multipart(scope):
                await serve_multipart(scope, receive, send)
                return
        await self.app(scope, receive, send)
