"""GraphQL enums of the contract, backed by the models' choices."""

from __future__ import annotations

import enum

import strawberry


@strawberry.enum
class Visibility(enum.Enum):
    PUBLIC = "PUBLIC"
    PRIVATE = "PRIVATE"


@strawberry.enum
class ActivityKind(enum.Enum):
    USER_JOINED = "USER_JOINED"
    STATUS_CHANGE = "STATUS_CHANGE"
    COMMENT = "COMMENT"


@strawberry.enum
class EventKind(enum.Enum):
    STATUS_CHANGE = "STATUS_CHANGE"
    COMMENT = "COMMENT"


@strawberry.enum
class Verb(enum.Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
