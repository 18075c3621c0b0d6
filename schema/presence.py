"""GraphQL surface of presence: who is online, live, for signed-in viewers only.

The state is kept by ``users.presence`` (Redis when ``REDIS_URL`` is set, else this
process's memory); each transition of a user is published once to ``PRESENCE_GROUP``
and reaches ``presence`` subscribers through the same live engine as ``activity``: a
pushed log (the message is the entry), since presence is state, not history.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, cast

import strawberry
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User

from events.visibility import Audience
from schema.context import AudienceContext, Info, require_user
from schema.errors import PulseError
from schema.live.hub import Log
from schema.live.streams import file_stream
from schema.loaders import PerLoopLoader
from schema.permissions import IsSignedIn
from schema.users import UserType, as_datetime
from users.presence import PRESENCE_GROUP, PRESENCE_MESSAGE_TYPE, presence_tracker

_positions = itertools.count(1)  # pushed entries' order in this process


@dataclass(frozen=True)
class PresenceEntry:
    """One transition of one user, as a process received it."""

    position: int
    user_id: int
    online: bool
    last_seen: float | None
    received_at: float


def presence_entry(message: dict[str, Any]) -> PresenceEntry | None:
    """The entry a ``presence.changed`` message carries (``None`` if malformed)."""
    user_id, online, last_seen = (
        message.get("user_id"),
        message.get("online"),
        message.get("last_seen"),
    )
    if message.get("type") != PRESENCE_MESSAGE_TYPE or not isinstance(user_id, int):
        return None
    if not isinstance(online, bool) or not isinstance(last_seen, int | float | None):
        return None
    return PresenceEntry(next(_positions), user_id, online, last_seen, time.time())


PRESENCE_LOG = Log(
    name="presence",
    group=PRESENCE_GROUP,
    position=lambda entry: entry.position,
    written_at=lambda entry: entry.received_at,
    entry_from=presence_entry,
)


async def _load_users(user_ids: list[int]) -> list[User | None]:
    found = await sync_to_async(_users_by_pk)(user_ids)
    return [found.get(pk) for pk in user_ids]


def _users_by_pk(user_ids: list[int]) -> dict[int, User]:
    return {u.pk: u for u in User.objects.select_related("profile").filter(pk__in=user_ids)}


# Batches the users of presence items into one query.
user_loader: PerLoopLoader[int, User | None] = PerLoopLoader(_load_users)


@strawberry.type(name="Presence")
class PresenceType:
    user_id: strawberry.Private[int]
    online: bool
    last_seen_at: datetime | None

    @strawberry.field
    async def user(self) -> UserType:
        found = await user_loader().load(self.user_id)
        if found is None:
            raise PulseError("The user is gone.", "NOT_FOUND")
        return cast(UserType, found)


@dataclass(frozen=True)
class PresenceStream:
    """The ``presence`` subscription: every transition, for every signed-in viewer."""

    log: ClassVar[Log] = PRESENCE_LOG
    after_id: int | None = None  # live only: presence is state, not history

    @staticmethod
    def matches(entry: PresenceEntry) -> bool:
        return True

    @staticmethod
    def audience(viewer_id: int | None, entry: PresenceEntry) -> Audience | None:
        """Signed-in viewers alone: the user the item is about, and everyone else."""
        if viewer_id is None:
            return None
        return Audience.ACTOR if viewer_id == entry.user_id else Audience.OTHER

    @staticmethod
    def position(entry: PresenceEntry) -> int:
        return entry.position

    @staticmethod
    def cursor(position: int) -> str:
        return ""  # nothing to resume: subscribe again and read onlineUsers

    @staticmethod
    def resume_after(cursor: str) -> int | None:
        return None

    @staticmethod
    def replay_page(*, viewer_id: int | None, after_id: int, limit: int) -> list[Any]:
        return []

    @staticmethod
    def root(entry: PresenceEntry) -> PresenceType:
        return PresenceType(
            user_id=entry.user_id, online=entry.online, last_seen_at=as_datetime(entry.last_seen)
        )

    @staticmethod
    def context(entry: PresenceEntry, seen_as: Audience) -> AudienceContext:
        """As the user it is about (who sees their own address), or as anyone signed in."""
        viewer_id = entry.user_id if seen_as is Audience.ACTOR else None
        return AudienceContext(viewer_id=viewer_id, signed_in=True)


@strawberry.type
class Query:
    @strawberry.field(extensions=[IsSignedIn()])
    async def online_users(self, info: Info, first: int | None = 50) -> list[UserType]:
        """Users online now, most recently seen first (signed-in viewers only)."""
        limit = 50 if first is None else first
        if not 0 <= limit <= settings.PULSE_MAX_PAGE_SIZE:
            raise PulseError(
                f"first must be between 0 and {settings.PULSE_MAX_PAGE_SIZE}.",
                "BAD_USER_INPUT",
                {"first": ["Out of range."]},
            )
        online = await asyncio.to_thread(presence_tracker().online_users, limit)
        users = await sync_to_async(_users_by_pk)([pk for pk, _ in online])
        return [
            cast(UserType, users[pk]) for pk, _ in online if pk in users and users[pk].is_active
        ]


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def presence(self, info: Info) -> AsyncGenerator[PresenceType, None]:
        """Signed-in only: one item per transition (offline -> online, online -> offline)
        of any user; live only (read ``onlineUsers`` for the state now)."""
        require_user(info)  # else UNAUTHENTICATED
        file_stream(info, PresenceStream())
        return
        yield  # the engine streams
