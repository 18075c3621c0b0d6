"""Document limits (query depth, aliases, tokens) and the parse and validation caches.

Every operation, over every transport, runs through strawberry's ``Schema.execute`` or
``Schema.stream`` with these extensions, so the same limits hold everywhere. The depth
and alias rules are built once per process, so strawberry's ``ValidationCache`` (keyed
by the document and the rule classes) answers a repeated document without validating
it again; ``ParserCache`` does the same for parsing.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

from django.conf import settings
from graphql import GraphQLError
from graphql.validation import ASTValidationRule
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator

DOCUMENT_CACHE_SIZE = 512  # distinct documents whose parse and validation are kept


class CachedParse(ParserCache):
    """strawberry's ``ParserCache``; a document that fails to parse is left to strawberry's
    own parse step, which reports the error the usual way (coded, masked)."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            with contextlib.suppress(GraphQLError):
                context.graphql_document = self.cached_parse_document(
                    context.query, **context.parse_options
                )
        yield


@functools.cache
def limit_rules() -> tuple[type[ASTValidationRule], ...]:
    """The depth and alias rules (``PULSE_MAX_QUERY_DEPTH``, ``PULSE_MAX_ALIASES``).

    Introspection fields do not count towards the depth, so GraphiQL's schema query is
    never refused.
    """
    return (
        depth_validator(settings.PULSE_MAX_QUERY_DEPTH, None),
        alias_validator(settings.PULSE_MAX_ALIASES),
    )


def limit_extensions() -> list[Callable[[], SchemaExtension]]:
    """Factories of the extensions that limit and cache documents (one set per operation)."""
    return [
        functools.partial(MaxTokensLimiter, max_token_count=settings.PULSE_MAX_TOKENS),
        lambda: AddValidationRules(list(limit_rules())),
        functools.partial(CachedParse, maxsize=DOCUMENT_CACHE_SIZE),
        functools.partial(ValidationCache, maxsize=DOCUMENT_CACHE_SIZE),
    ]
