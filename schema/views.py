"""GraphQL over HTTP (Django view) and over WebSocket (Channels consumer)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from cross_web import HTTPException
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.middleware.csrf import get_token
from django.template.loader import render_to_string
from graphql import GraphQLError
from strawberry.channels import GraphQLWSConsumer
from strawberry.django.views import AsyncGraphQLView, TemporalHttpResponse
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_WS_PROTOCOL
from strawberry.types.execution import ExecutionResult
from strawberry.types.unset import UnsetType

from backend.logconfig import new_id, scope_log_context
from backend.metrics import WEBSOCKETS_OPEN
from schema.auth import ANONYMOUS_USER, SOCKETS_PER_USER, cookie_session_key, session_user
from schema.errors import GRAPHQL_VALIDATION_FAILED, coded
from schema.live.graphql_transport_ws import GraphQLTransportWSAdapter
from schema.live.graphql_ws import GraphQLWSAdapter
from schema.schema import schema
from schema.ws_messages import MALFORMED_MESSAGE_CLOSE_CODE, malformed_reason
from users.tokens import bearer_token, token_user

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"

logger = logging.getLogger(__name__)


class GraphQLView(AsyncGraphQLView):
    """strawberry's Django view, with GraphiQL served from Pulse's own static files.

    It also follows the GraphQL-over-HTTP spec where strawberry does not: a client that
    names ``application/graphql-response+json`` in ``Accept`` gets that media type (and
    400 for a document that does not parse or validate), and a body that is not a JSON
    object (or batch) is a 400, never a 500.
    """

    async def get_sub_response(self, request: HttpRequest) -> TemporalHttpResponse:
        sub_response = await super().get_sub_response(request)
        if GRAPHQL_RESPONSE_JSON in request.headers.get("Accept", ""):
            sub_response["Content-Type"] = GRAPHQL_RESPONSE_JSON
        return sub_response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: HttpResponse,
    ) -> HttpResponseBase:
        if sub_response.get("Content-Type") == GRAPHQL_RESPONSE_JSON and is_request_error(
            response_data
        ):
            sub_response.status_code = 400
        return super().create_response(response_data, sub_response)

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        """strawberry's, with a document naming no runnable operation answered as a coded
        GraphQL error (as every other transport answers it), not a plain-text 400."""
        try:
            return await super().execute_single(*args, **kwargs)
        except HTTPException as error:
            cause = error.__cause__
            if not isinstance(cause, CannotGetOperationTypeError | InvalidOperationTypeError):
                raise
            coded_error = coded(GraphQLError(error.reason, original_error=cause))
            return ExecutionResult(data=None, errors=[coded_error])

    def parse_json(self, data: str | bytes) -> Any:
        try:
            body = self.decode_json(data)
        except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, too deep
            raise HTTPException(400, "Unable to parse request body as JSON") from exc
        if not isinstance(body, dict | list):
            raise HTTPException(400, "The request body must be a JSON object")
        for request in body if isinstance(body, list) else [body]:
            name = request.get("operationName") if isinstance(request, dict) else None
            if isinstance(name, str) and not is_valid_unicode(name):
                raise HTTPException(400, "operationName must be valid Unicode")
        return body

    async def render_graphql_ide(self, request: HttpRequest) -> HttpResponse:
        get_token(request)  # sets the CSRF cookie GraphiQL sends back
        content = await sync_to_async(render_to_string)("graphql/graphiql.html", request=request)
        response = HttpResponse(content)
        response["Content-Security-Policy"] = graphiql_csp(request.get_host())
        return response


def is_request_error(response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse]) -> bool:
    """Whether a single response is a document refused before execution (no data)."""
    if not isinstance(response_data, dict) or response_data.get("data") is not None:
        return False
    errors: list[Any] = list(response_data.get("errors") or [])
    codes = [(error.get("extensions") or {}).get("code") for error in errors]
    return bool(codes) and all(code == GRAPHQL_VALIDATION_FAILED for code in codes)


def is_valid_unicode(text: str) -> bool:
    """``False`` for text holding unpaired surrogates (which UTF-8 cannot encode)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


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
TOO_MANY_SOCKETS_CLOSE_CODE = 4429
TOO_MANY_SOCKETS_REASON = "Too many open sockets for this user"
HANDLER_END_TIMEOUT_SECONDS = 1.0  # for a cancelled handler task to finish


class SocketInbox:
    """The frames a client sent that strawberry's handler has not read yet.

    It stands in for the ``asyncio.Queue`` strawberry's consumer makes per socket and
    offers the two methods it uses (``put_nowait`` and ``get``). A Queue keeps three
    deques and an Event (about 3 KiB) for the socket's whole life; this keeps a deque
    only while frames wait, and one future while the handler waits.
    """

    __slots__ = ("_frames", "_waiter")

    def __init__(self) -> None:
        self._frames: collections.deque[Any] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, frame: Any) -> None:
        if self._frames is None:
            self._frames = collections.deque()
        self._frames.append(frame)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._frames:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        frame = self._frames.popleft()
        if not self._frames:
            self._frames = None
        return frame


class GraphQLWebSocketConsumer(GraphQLWSConsumer):
    """strawberry's consumer, authenticating in ``connection_init``.

    The viewer is the user of the bearer token in the ``connection_init`` payload, else
    the user of the handshake's session cookie, else anonymous (resolved here, once, so
    the socket keeps no session middleware, scope copies or lazy objects). strawberry
    refuses cross-origin handshakes from origins not in ``CSRF_TRUSTED_ORIGINS`` before
    any of this runs. Every operation runs on the live engine (``schema.live``), through
    the adapter of the socket's subprotocol.
    """

    graphql_transport_ws_handler_class = GraphQLTransportWSAdapter
    graphql_ws_handler_class = GraphQLWSAdapter

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.message_queue = SocketInbox()  # type: ignore[assignment]
        self.counted_user_id: int | None = None  # set while counted in SOCKETS_PER_USER
        self.protocol_name: str | None = None  # the subprotocol, once a message arrives
        self.refused = False  # closed for a malformed message

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' ``AsyncConsumer.__call__`` for a socket with no channel-layer channel.

        Activities reach sockets through the process's single hub listener, so the
        socket needs no channel, queue, receive task or Redis SUBSCRIBE of its own; and
        with one message source, each message is awaited directly instead of through a
        task per message.

        Every line logged for this socket carries its ``connection_id`` (the server's,
        under ``backend.server``): it is bound in this task's context, which the
        handler's tasks inherit and no other connection sees.
        """
        self.scope = scope
        scope["user"] = ANONYMOUS_USER  # until connection_init says otherwise
        self.channel_layer = None
        self.base_send = send
        connection_id = scope_log_context(scope).get("connection_id") or new_id()
        structlog.contextvars.bind_contextvars(connection_id=connection_id)
        WEBSOCKETS_OPEN.inc()
        try:
            with contextlib.suppress(StopConsumer):
                while True:
                    await self.dispatch(await receive())
        finally:
            WEBSOCKETS_OPEN.dec()
            if self.counted_user_id is not None:
                SOCKETS_PER_USER.release(self.counted_user_id)
            await self._end_handler_task()

    async def _end_handler_task(self) -> None:
        """Cancel strawberry's handler task if the socket ended without it (this task
        cancelled, as daphne does at shutdown to whatever is still running): else it
        is left pending, and destroyed with the loop."""
        run_task = self.run_task
        if run_task is not None and not run_task.done():
            run_task.cancel()
            await asyncio.wait({run_task}, timeout=HANDLER_END_TIMEOUT_SECONDS)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Queue a client message for the handler, or close with 4400 if malformed."""
        if self.refused:
            return  # closing already; what else the client sends is ignored
        if self.protocol_name is None:
            self.protocol_name = await self.pick_websocket_subprotocol(self) or ""
        message: Any = None
        reason: str | None = "Message must be text"
        if text_data is not None:
            try:
                message = json.loads(text_data)
            except ValueError:
                reason = "Message must be valid JSON"
            else:
                reason = malformed_reason(message, self.protocol_name)
        if reason is not None:
            self.refused = True
            await self.close(code=MALFORMED_MESSAGE_CLOSE_CODE, reason=reason)
            return
        # Already decoded: decode_json below passes it through.
        self.message_queue.put_nowait({"message": message, "disconnected": False})

    def decode_json(self, data: str | bytes | dict[str, Any]) -> object:
        return data if isinstance(data, dict) else super().decode_json(data)

    async def on_ws_connect(self, context: Any) -> UnsetType | dict[str, object] | None:
        """Authenticate ``connection_init``; then the socket's lines carry ``user_id``."""
        result = await self._authenticate(context)
        user = self.scope["user"]
        structlog.contextvars.bind_contextvars(user_id=user.pk if user.is_authenticated else None)
        logger.info("websocket_connection_init", extra={"subprotocol": self.protocol_name})
        return result

    async def _authenticate(self, context: Any) -> UnsetType | dict[str, object] | None:
        params = context.get("connection_params") or {}
        header = params.get("authorization") or params.get("Authorization")
        if header is None:
            if session_key := cookie_session_key(self.scope):
                self.scope["user"] = await database_sync_to_async(session_user)(session_key)
            if self.scope["user"].is_authenticated:
                return await self._claim_socket(self.scope["user"].pk, context)
            return await super().on_ws_connect(context)
        token = bearer_token(header) if isinstance(header, str) else None
        user = await database_sync_to_async(token_user)(token=token) if token else None
        if user is None:
            if self.protocol_name == GRAPHQL_WS_PROTOCOL:  # set by receive()
                # The legacy protocol would close with 1011; the contract says 4403.
                await self.close(code=INVALID_TOKEN_CLOSE_CODE)
            raise ConnectionRejectionError({"message": "Invalid or expired token."})
        self.scope["user"] = user
        self.scope["auth_token"] = token
        return await self._claim_socket(user.pk, context)

    async def _claim_socket(
        self, user_id: int, context: Any
    ) -> UnsetType | dict[str, object] | None:
        """Count the socket against its user's limit, or close it with 4429."""
        if not SOCKETS_PER_USER.claim(user_id):
            await self.close(code=TOO_MANY_SOCKETS_CLOSE_CODE, reason=TOO_MANY_SOCKETS_REASON)
            raise ConnectionRejectionError({"message": TOO_MANY_SOCKETS_REASON})
        self.counted_user_id = user_id
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
