"""GraphQL over HTTP (Django view) and over WebSocket (Channels consumer)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from strawberry.channels import GraphQLWSConsumer
from strawberry.django.views import AsyncGraphQLView
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from schema.live_handler import SharedActivityTransportWSHandler
from schema.schema import schema
from users.tokens import bearer_token, token_user


class GraphQLView(AsyncGraphQLView):
    """strawberry's Django view, with GraphiQL served from Pulse's own static files."""

    async def render_graphql_ide(self, request: HttpRequest) -> HttpResponse:
        get_token(request)  # sets the CSRF cookie GraphiQL sends back
        content = await sync_to_async(render_to_string)("graphql/graphiql.html", request=request)
        response = HttpResponse(content)
        response["Content-Security-Policy"] = graphiql_csp(request.get_host())
        return response


def graphiql_csp(host: str) -> str:
    """A strict policy for GraphiQL: only this server's scripts, API and WebSocket."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",  # GraphiQL's editors inject style elements
            "img-src 'self' data:",
            "font-src 'self' data:",
            f"connect-src 'self' ws://{host} wss://{host}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


INVALID_TOKEN_CLOSE_CODE = 4403


class GraphQLWebSocketConsumer(GraphQLWSConsumer):
    """strawberry's consumer, authenticating by token in ``connection_init``.

    Without a token the session cookie's user (from ``AuthMiddlewareStack``) stays, or
    the anonymous user; strawberry refuses cross-origin handshakes from origins not in
    ``CSRF_TRUSTED_ORIGINS`` before any of this runs. ``activity`` subscriptions over
    graphql-transport-ws run once per shape (``schema.live``), not once per subscriber.
    """

    graphql_transport_ws_handler_class = SharedActivityTransportWSHandler
    # An alias that names no channel layer: Channels then gives the socket no channel of
    # its own (no queue, no receive task, no Redis SUBSCRIBE per socket). Activities
    # reach sockets through the process's single hub listener instead.
    channel_layer_alias = "pulse.no-per-socket-channel"

    async def on_ws_connect(self, context: Any) -> UnsetType | dict[str, object] | None:
        params = context.get("connection_params") or {}
        header = params.get("authorization") or params.get("Authorization")
        if header is None:
            return await super().on_ws_connect(context)
        token = bearer_token(header) if isinstance(header, str) else None
        user = await sync_to_async(token_user)(token=token) if token else None
        if user is None:
            if await self.pick_websocket_subprotocol(self) == GRAPHQL_WS_PROTOCOL:
                # The legacy protocol would close with 1011; the contract says 4403.
                await self.close(code=INVALID_TOKEN_CLOSE_CODE)
            raise ConnectionRejectionError({"message": "Invalid or expired token."})
        self.scope["user"] = user
        self.scope["auth_token"] = token
        return await super().on_ws_connect(context)


def websocket_consumer() -> Any:
    """The ASGI app of the WebSocket endpoint, configured from settings."""
    return GraphQLWebSocketConsumer.as_asgi(
        schema=schema,
        connection_init_wait_timeout=dt.timedelta(
            seconds=settings.PULSE_CONNECTION_INIT_TIMEOUT_SECONDS
        ),
        max_subscriptions_per_connection=settings.PULSE_MAX_OPERATIONS_PER_SOCKET,
        allowed_origins=settings.CSRF_TRUSTED_ORIGINS,
    )
