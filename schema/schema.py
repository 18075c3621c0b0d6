"""The root schema: each domain's Query and Mutation merged, with the extensions."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext
from strawberry_django.optimizer import DjangoOptimizerExtension

from schema import events, notifications, presence, users
from schema.errors import CodedErrors, log_client_errors
from schema.limits import limit_extensions
from schema.live.streams import SubscriptionsNeedAStream
from schema.strings import StorableText
from schema.subscriptions import Subscription as ActivitySubscription

Query = merge_types("Query", (users.Query, events.Query, notifications.Query, presence.Query))
Mutation = merge_types("Mutation", (users.Mutation, events.Mutation, notifications.Mutation))
Subscription = merge_types(
    "Subscription", (ActivitySubscription, notifications.Subscription, presence.Subscription)
)


class PulseSchema(strawberry.Schema):
    """strawberry's schema, logging a client's error as one line instead of strawberry's
    traceback per error (``schema.errors.log_client_errors``)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_client_errors(errors)


schema = PulseSchema(
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
