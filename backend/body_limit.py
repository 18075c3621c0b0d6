"""An ASGI guard answering HTTP 413 to request bodies over ``PULSE_MAX_REQUEST_BYTES``.

Django only refuses large *form* bodies (``DATA_UPLOAD_MAX_MEMORY_SIZE``) and answers
400; GraphQL's JSON bodies are read whole. This answers 413 with a coded GraphQL error:
at once when ``Content-Length`` says too much, else as soon as the bytes received pass
the limit (chunked bodies), before Django handles the request.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"

Scope = dict[str, Any]
Message = dict[str, Any]


class RequestBodyLimit:
    """Wrap an ASGI app so oversized HTTP request bodies get 413 and never reach it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = settings.PULSE_MAX_REQUEST_BYTES
        if _declared_length(scope) > limit:
            await _send_too_large(send, limit)
            return
        received = 0
        too_large = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    # Django stops reading and sends nothing for a gone client.
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)
        if too_large and not response_started:
            await _send_too_large(send, limit)


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _send_too_large(send: Any, limit: int) -> None:
    body = json.dumps(
        {
            "data": None,
            "errors": [
                {
                    "message": f"Request body larger than {limit} bytes.",
                    "extensions": {"code": PAYLOAD_TOO_LARGE},
                }
            ],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
