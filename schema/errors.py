"""Errors of one shape: every GraphQL error carries ``extensions.code``.

Resolvers raise Django's own exceptions (``ValidationError``, ``PermissionDenied``,
``ObjectDoesNotExist``) or the helpers below; :class:`CodedErrors` turns them into
coded errors and masks everything else as ``INTERNAL``, so no stack trace or SQL leaks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.core.exceptions import NON_FIELD_ERRORS, ObjectDoesNotExist, PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from graphql.error import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

logger = logging.getLogger(__name__)

UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
BAD_USER_INPUT = "BAD_USER_INPUT"
NOT_FOUND = "NOT_FOUND"
RATE_LIMITED = "RATE_LIMITED"
INTERNAL = "INTERNAL"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
SLOW_CONSUMER = "SLOW_CONSUMER"


class UnrunnableDocumentError(GraphQLError):
    """A document that does not parse (or has too many tokens to be parsed):
    graphql-transport-ws closes the socket with 4400 for these."""


class PulseError(GraphQLError):
    """A GraphQL error with a contract code; raise it from any resolver."""

    def __init__(
        self, message: str, code: str, fields: Mapping[str, list[str]] | None = None
    ) -> None:
        extensions: dict[str, object] = {"code": code}
        if fields is not None:
            extensions["fields"] = dict(fields)
        super().__init__(message, extensions=extensions)


def unauthenticated(message: str = "You must be signed in.") -> PulseError:
    return PulseError(message, UNAUTHENTICATED)


def rate_limited(message: str) -> PulseError:
    return PulseError(message, RATE_LIMITED)


def slow_consumer(last_cursor: str) -> PulseError:
    """A subscription ended because its bounded queue overflowed."""
    return PulseError(
        "Too slow to keep up; resubscribe with `after` set to the last cursor received "
        f"({last_cursor}).",
        SLOW_CONSUMER,
    )


def needs_a_stream() -> PulseError:
    """A subscription sent as a plain HTTP request."""
    return PulseError(
        "A subscription needs a streaming transport: a WebSocket (graphql-transport-ws or "
        "graphql-ws), SSE at /graphql/stream, or POST /graphql/ with "
        'Accept: multipart/mixed;subscriptionSpec="1.0".',
        GRAPHQL_VALIDATION_FAILED,
    )


def bad_resume_cursor() -> PulseError:
    """A ``Last-Event-ID`` that is not a cursor this server sent."""
    return PulseError(
        "Invalid Last-Event-ID: not a cursor.",
        BAD_USER_INPUT,
        {"lastEventId": ["Not a cursor this server sent."]},
    )


def internal_error() -> PulseError:
    """What a client is told when the server failed it (the details are only logged)."""
    return PulseError("Internal server error.", INTERNAL)


def not_found(message: str = "Not found.") -> PulseError:
    return PulseError(message, NOT_FOUND)


def bad_user_input(
    error: DjangoValidationError, field_names: Mapping[str, str] | None = None
) -> PulseError:
    """Map a Django ``ValidationError`` to ``BAD_USER_INPUT`` with ``fields``.

    ``field_names`` renames model fields to their GraphQL input names
    (``{"target": "targetId"}``); errors not tied to a field go under ``input``.
    """
    names = field_names or {}
    fields: dict[str, list[str]] = {}
    if hasattr(error, "error_dict"):
        for name, messages in error.message_dict.items():
            key = "input" if name == NON_FIELD_ERRORS else names.get(name, _camel(name))
            fields.setdefault(key, []).extend(messages)
    else:
        fields["input"] = list(error.messages)
    return PulseError("Invalid input.", BAD_USER_INPUT, fields)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _is_relay_argument_error(error: Exception) -> bool:
    # strawberry's connection slicing rejects bad `first`/`last` with a ValueError.
    return isinstance(error, ValueError) and str(error).startswith("Argument '")


def coded(error: GraphQLError) -> GraphQLError:
    """Return ``error`` with a contract code, masking anything unexpected (logged once,
    with its traceback)."""
    result = _classified(error)
    if (result.extensions or {}).get("code") == INTERNAL:
        logger.error("Unexpected error in GraphQL execution", exc_info=error.original_error)
    return result


def error_code(error: GraphQLError) -> str:
    """The contract code ``error`` is answered with (nothing logged)."""
    return str((_classified(error).extensions or {}).get("code"))


def _classified(error: GraphQLError) -> GraphQLError:
    """``error`` rebuilt with its contract code; ``INTERNAL`` for anything unexpected."""
    original = error.original_error
    if isinstance(error, GraphQLSyntaxError):
        return _rebuild(error, error.message, {"code": GRAPHQL_VALIDATION_FAILED}, unrunnable=True)
    if original is None:
        # Validation of the document itself: safe to show as is.
        extensions = dict(error.extensions or {})
        extensions.setdefault("code", GRAPHQL_VALIDATION_FAILED)
        return _rebuild(error, error.message, extensions)
    if isinstance(original, GraphQLError) and (original.extensions or {}).get("code"):
        return _rebuild(error, original.message, dict(original.extensions or {}))
    if isinstance(original, GraphQLError) and error.path is None:
        # graphql-core refused a variable's value before execution (wrong type, null for
        # a non-null, unknown enum value or input field): about the request, safe to show.
        return _rebuild(error, error.message, {"code": GRAPHQL_VALIDATION_FAILED})
    if isinstance(original, DjangoValidationError):
        converted = bad_user_input(original)
        return _rebuild(error, converted.message, dict(converted.extensions or {}))
    if isinstance(original, PermissionDenied):
        return _rebuild(error, str(original) or "Forbidden.", {"code": FORBIDDEN})
    if isinstance(original, ObjectDoesNotExist):
        return _rebuild(error, "Not found.", {"code": NOT_FOUND})
    if isinstance(original, CannotGetOperationTypeError):
        name = original.operation_name
        message = f"Unknown operation named {name!r}." if name else "No operation to run."
        return _rebuild(error, message, {"code": GRAPHQL_VALIDATION_FAILED})
    if isinstance(original, InvalidOperationTypeError):
        # The legacy graphql-ws subprotocol only runs subscriptions.
        kind = original.operation_type.value
        message = (
            f"A {kind} cannot run over the legacy graphql-ws subprotocol; "
            "use graphql-transport-ws or HTTP."
        )
        return _rebuild(error, message, {"code": GRAPHQL_VALIDATION_FAILED})
    if _is_relay_argument_error(original):
        return _rebuild(error, str(original), {"code": BAD_USER_INPUT})
    return _rebuild(error, "Internal server error.", {"code": INTERNAL})


def _rebuild(
    error: GraphQLError, message: str, extensions: dict[str, object], unrunnable: bool = False
) -> GraphQLError:
    kind = UnrunnableDocumentError if unrunnable else GraphQLError
    return kind(
        message=message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


class CodedErrors(MaskErrors):
    """strawberry's ``MaskErrors``, turning each error into a coded one."""

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [coded(error) for error in errors]


def log_client_errors(errors: list[GraphQLError]) -> None:
    """One line per error a client caused (its code, message and path, no traceback):
    an ``UNAUTHENTICATED`` or ``BAD_USER_INPUT`` is the client's business, not a fault.
    ``INTERNAL`` ones are logged with their traceback where they are masked (``coded``)."""
    for error in errors:
        code = error_code(error)
        if code != INTERNAL:
            logger.info(
                "graphql_client_error",
                extra={"code": code, "error": error.message, "path": error.path},
            )
