"""Relay connections with the contract's default page size and cap."""

from __future__ import annotations

from typing import Any

import strawberry_django
from django.conf import settings
from strawberry.extensions.field_extension import SyncExtensionResolver
from strawberry.types.field import StrawberryField
from strawberry_django.fields.field import StrawberryDjangoConnectionExtension

from schema.context import Info
from schema.errors import BAD_USER_INPUT, PulseError
from schema.ids import decode_connection_cursor


class DefaultFirstConnectionExtension(StrawberryDjangoConnectionExtension):
    """strawberry-django's connection, with ``first`` defaulting to a page size."""

    def __init__(self, default_first: int, max_results: int | None = None) -> None:
        super().__init__(max_results=max_results)
        self.default_first = default_first

    def apply(self, field: StrawberryField) -> None:
        super().apply(field)
        for argument in field.arguments:
            if argument.python_name == "first":
                argument.default = self.default_first

    def resolve(
        self,
        next_: SyncExtensionResolver,
        source: Any,
        info: Info,
        *,
        before: str | None = None,
        after: str | None = None,
        first: int | None = None,
        last: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Refuse a malformed cursor as ``BAD_USER_INPUT`` before strawberry slices with it.

        strawberry turns any cursor's payload into an offset with ``int()``: junk raised
        ``ValueError`` and a huge or negative offset a database error, both ``INTERNAL``.
        """
        for name, cursor in (("before", before), ("after", after)):
            if cursor and decode_connection_cursor(cursor) is None:
                raise PulseError("Invalid cursor.", BAD_USER_INPUT, {name: ["Invalid cursor."]})
        return super().resolve(
            next_, source, info, before=before, after=after, first=first, last=last, **kwargs
        )


def connection(graphql_type: Any, *, default_first: int, **kwargs: Any) -> Any:
    """``strawberry_django.connection`` whose ``first`` defaults to ``default_first``."""
    field = strawberry_django.connection(
        graphql_type, max_results=settings.PULSE_MAX_PAGE_SIZE, **kwargs
    )
    # strawberry chains field extensions so that the last one listed runs first: the
    # connection goes first, so a permission extension (``IsSignedIn``) answers before
    # the cursors are looked at (an anonymous caller is UNAUTHENTICATED whatever it sends).
    others = [e for e in field.extensions if not isinstance(e, StrawberryDjangoConnectionExtension)]
    field.extensions = [
        DefaultFirstConnectionExtension(default_first, max_results=settings.PULSE_MAX_PAGE_SIZE),
        *others,
    ]
    return field
