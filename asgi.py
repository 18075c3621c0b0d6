"""ASGI entry point: HTTP to Django (GraphQL view included), WebSocket to GraphQL.

Serve with ``daphne asgi:application``.
"""

import asyncio
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from backend.body_limit import RequestBodyLimit  # noqa: E402
from backend.metrics import with_metrics_endpoint  # noqa: E402
from backend.server.plain_daphne import warn_when_plain_daphne  # noqa: E402
from events.publisher import serve_from  # noqa: E402
from schema.live.http_routes import LiveHTTP  # noqa: E402
from schema.views import websocket_consumer  # noqa: E402

router = ProtocolTypeRouter(
    {
        # /metrics (Prometheus) is answered before Django: see backend.metrics.
        # SSE (/graphql/stream) and multipart subscriptions are served by the live
        # engine's HTTP adapters (schema.live.http_routes), the rest by Django.
        "http": with_metrics_endpoint(
            RequestBodyLimit(LiveHTTP(ASGIStaticFilesHandler(django_asgi_app)))
        ),
        # The consumer authenticates the socket itself (token or session cookie).
        "websocket": URLRouter([re_path(r"^graphql/?$", websocket_consumer())]),
    }
)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The router, telling the publisher which event loop serves (``events.publisher``)."""
    serve_from(asyncio.get_running_loop())
    await router(scope, receive, send)


warn_when_plain_daphne()
