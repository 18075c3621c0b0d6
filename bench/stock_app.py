"""The stock pattern: strawberry + Channels, one GraphQL execution per subscriber.

Serve with ``python -m daphne -b 127.0.0.1 -p PORT bench.stock_app:application``;
with ``REDIS_URL`` set it uses channels-redis' pub/sub layer, else the in-memory layer.

This is the subscription recipe from strawberry's Channels docs: each subscription's
resolver joins a channel-layer group (``listen_to_channel(..., groups=[...])`` calls
``group_add`` for the consumer's channel) and yields one root value per message, which
strawberry then executes for that subscriber alone. The ``createStatusChange``
mutation only does ``group_send`` (nothing is stored). The schema mirrors the part of
Pulse's that the benchmark's subscription document selects, so the same documents and
the same result shape work against both.
"""

from __future__ import annotations

import base64
import enum
import itertools
import os
from collections.abc import AsyncGenerator
from typing import Any, cast

import django
from django.conf import settings

if not settings.configured:
    _redis_url = os.environ.get("REDIS_URL", "")
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-stock-app-not-secret"),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        INSTALLED_APPS=["channels"],
        USE_TZ=True,
        CHANNEL_LAYERS={
            "default": (
                {
                    "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                    "CONFIG": {"hosts": [_redis_url]},
                }
                if _redis_url
                else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
            )
        },
    )
    django.setup()

import strawberry
from channels.layers import get_channel_layer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import re_path
from strawberry.channels import GraphQLHTTPConsumer, GraphQLWSConsumer
from strawberry.types import Info

GROUP = "bench.activity"
MESSAGE_TYPE = "activity.created"
_activity_ids = itertools.count(1)


@strawberry.enum
class ActivityKind(enum.Enum):
    STATUS_CHANGE = "status_change"


@strawberry.type
class User:
    username: str


@strawberry.interface
class Event:
    id: strawberry.ID


@strawberry.type
class StatusChange(Event):
    status: str


@strawberry.type
class Activity:
    cursor: str
    kind: ActivityKind
    message: str
    actor: User
    event: Event | None


@strawberry.input
class CreateStatusChangeInput:
    status: str


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_status_change(self, input: CreateStatusChangeInput) -> StatusChange:
        """Publish a status change to every subscriber through the channel layer."""
        activity_id = next(_activity_ids)
        layer: Any = get_channel_layer()
        await layer.group_send(
            GROUP,
            {"type": MESSAGE_TYPE, "id": activity_id, "status": input.status, "actor": "bench"},
        )
        return StatusChange(id=strawberry.ID(str(activity_id)), status=input.status)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def activity(self, info: Info) -> AsyncGenerator[Activity, None]:
        """Every status change published after subscribing, executed per subscriber."""
        ws = info.context["ws"]
        async with ws.listen_to_channel(MESSAGE_TYPE, groups=[GROUP]) as messages:
            async for message in messages:
                activity_id, status = message["id"], message["status"]
                yield Activity(
                    cursor=base64.b64encode(f"activity:{activity_id}".encode()).decode(),
                    kind=ActivityKind.STATUS_CHANGE,
                    message=f"{message['actor']} changed status to {status!r}",
                    actor=User(username=message["actor"]),
                    event=StatusChange(id=strawberry.ID(str(activity_id)), status=status),
                )


schema = strawberry.Schema(
    query=Query, mutation=Mutation, subscription=Subscription, types=[StatusChange]
)


async def healthz(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``GET /healthz``: 200 once the app is loaded."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                re_path(r"^graphql/?$", GraphQLHTTPConsumer.as_asgi(schema=schema)),
                re_path(r"^healthz$", cast(Any, healthz)),  # an ASGI app, not a view
            ]
        ),
        "websocket": URLRouter([re_path(r"^graphql/?$", GraphQLWSConsumer.as_asgi(schema=schema))]),
    }
)
