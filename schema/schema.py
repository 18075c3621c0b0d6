"""The root schema: each domain's Query and Mutation merged, with the extensions."""

from __future__ import annotations

import strawberry
from strawberry.tools import merge_types
from strawberry_django.optimizer import DjangoOptimizerExtension

from schema import events, notifications, presence, users
from schema.errors import CodedErrors
from schema.limits import limit_extensions
from schema.live.streams import SubscriptionsNeedAStream
from schema.strings import StorableText
from schema.subscriptions import Subscription as ActivitySubscription

Query = merge_types("Query", (users.Query, events.Query, notifications.Query, presence.Query))
Mutation = merge_types("Mutation", (users.Mutation, events.Mutation, notifications.Mutation))
Subscription = merge_types(
    "Subscription", (ActivitySubscription, notifications.Subscription, presence.Subscription)
)

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    types=events.EVENT_TYPES,
    extensions=[
        *limit_extensions(),
        StorableText,  # after the validation cache, which sets the document's errors
        SubscriptionsNeedAStream,
        DjangoOptimizerExtension,
        CodedErrors,
    ],
)
