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

With ``STOCK_DATABASE_URL`` set (a ``dj_database_url`` URL: SQLite or PostgreSQL; for
scenario (w), the cost of a write), the mutation stores its status first, the way the
Channels docs pair a model with a group: ``await Status.objects.acreate(...)``, and a
``post_save`` receiver registers ``transaction.on_commit(lambda:
async_to_sync(layer.group_send)(...))``. The table is created at start-up (one
``schema_editor().create_model``, on an empty database). SQLite gets the same pragmas
and busy timeout as Pulse's settings (WAL, ``synchronous=NORMAL``, 20 s), on Django's
own backend. Without the variable nothing changes: no database at all.
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
    _stored = bool(os.environ.get("STOCK_DATABASE_URL"))
    _storage: dict[str, Any] = {}
    if _stored:
        import dj_database_url

        _database = dj_database_url.parse(os.environ["STOCK_DATABASE_URL"])
        if _database["ENGINE"] == "django.db.backends.sqlite3":
            _database.setdefault("OPTIONS", {}).update(
                {
                    "timeout": 20,
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                }
            )
        _storage = {
            "DATABASES": {"default": _database},
            "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        }
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("SECRET_KEY", "bench-stock-app-not-secret"),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        INSTALLED_APPS=["channels", "bench"] if _stored else ["channels"],
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
        **_storage,
    )
    django.setup()

import strawberry
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.db import connection, models, transaction
from django.db.models.signals import post_save
from django.urls import re_path
from strawberry.channels import GraphQLHTTPConsumer, GraphQLWSConsumer
from strawberry.types import Info

STORED = bool(os.environ.get("STOCK_DATABASE_URL"))
GROUP = "bench.activity"
MESSAGE_TYPE = "activity.created"
_activity_ids = itertools.count(1)


class Status(models.Model):
    """A stored status change (only with ``STOCK_DATABASE_URL``)."""

    text = models.CharField(max_length=280)
    created_at = models.DateTimeField(auto_now_add=True)
    objects: models.Manager[Status] = models.Manager()

    class Meta:
        app_label = "bench"

    def __str__(self) -> str:
        return self.text


def _message(activity_id: int, status: str) -> dict[str, Any]:
    return {"type": MESSAGE_TYPE, "id": activity_id, "status": status, "actor": "bench"}


def publish_on_commit(sender: type[Status], instance: Status, raw: bool = False, **_: Any) -> None:
    """``post_save``: publish the new status once its transaction commits."""
    if raw:
        return
    layer: Any = get_channel_layer()
    message = _message(instance.pk, instance.text)
    transaction.on_commit(lambda: async_to_sync(layer.group_send)(GROUP, message))


if STORED:
    post_save.connect(publish_on_commit, sender=Status, dispatch_uid="bench.stock.publish")
    if Status._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(Status)
    connection.close()  # start-up's connection; requests open their own


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
        """Publish a status change to every subscriber through the channel layer; with
        storage, store it and let ``post_save`` publish it on commit."""
        if STORED:
            row = await Status.objects.acreate(text=input.status)
            return StatusChange(id=strawberry.ID(str(row.pk)), status=input.status)
        activity_id = next(_activity_ids)
        layer: Any = get_channel_layer()
        await layer.group_send(GROUP, _message(activity_id, input.status))
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
