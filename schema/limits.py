"""Document limits: query depth, aliases and tokens, from settings.

strawberry's own extensions enforce them for every operation it runs; the shared
``activity`` path (``schema.live_handler``) parses and validates documents itself and
uses :func:`parse_limited` and :func:`limit_rules` to apply the same limits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from graphql import DocumentNode, parse
from graphql.validation import ASTValidationRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)


def limit_extensions() -> list[Callable[[], SchemaExtension]]:
    """Factories of strawberry's extensions enforcing ``PULSE_MAX_TOKENS``,
    ``PULSE_MAX_QUERY_DEPTH`` and ``PULSE_MAX_ALIASES`` (one instance per operation).

    Introspection fields do not count towards the depth, so GraphiQL's schema query
    is never refused.
    """
    return [
        functools.partial(MaxTokensLimiter, max_token_count=settings.PULSE_MAX_TOKENS),
        functools.partial(QueryDepthLimiter, max_depth=settings.PULSE_MAX_QUERY_DEPTH),
        functools.partial(MaxAliasesLimiter, max_alias_count=settings.PULSE_MAX_ALIASES),
    ]


def limit_rules() -> tuple[type[ASTValidationRule], ...]:
    """The depth and alias validation rules, to add to graphql-core's own."""
    rules: list[type[ASTValidationRule]] = []
    for make_extension in limit_extensions():
        extension = make_extension()
        if isinstance(extension, AddValidationRules):
            rules.extend(extension.validation_rules)
    return tuple(rules)


def parse_limited(query: str) -> DocumentNode:
    """Parse a document, refusing one of more than ``PULSE_MAX_TOKENS`` tokens."""
    return parse(query, max_tokens=settings.PULSE_MAX_TOKENS)
