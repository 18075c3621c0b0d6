"""GraphQL surface of users: types, queries and mutations."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from strawberry import relay
from strawberry_django.relay import DjangoListConnection

from events.stats import stats_for
from schema.context import AudienceContext, Info, client_address, require_user, viewer, viewer_id
from schema.errors import bad_user_input, rate_limited, unauthenticated
from schema.ids import decode_pk
from schema.loaders import PerLoopLoader
from schema.pagination import connection
from schema.permissions import IsSignedIn
from users import services
from users.models import Profile
from users.presence import presence_tracker
from users.ratelimit import LoginAttempt
from users.tokens import token_issue, token_revoke

# Set on the user a createUser or login result returns: its caller is that user.
REVEAL_EMAIL = "_pulse_reveal_email"


@strawberry_django.type(Profile, name="Profile")
class ProfileType:
    website: str
    bio: str


@strawberry.type(name="UserStats")
class UserStatsType:
    """A user's public posting stats (``events.stats``: cached, invalidated on commit)."""

    status_count: int
    comment_count: int
    last_posted_at: datetime | None


async def _load_stats(user_ids: list[int]) -> list[UserStatsType]:
    found = await sync_to_async(stats_for)(user_ids)
    return [UserStatsType(**asdict(found[user_id])) for user_id in user_ids]


# Batches the ``stats`` of every user resolved in one tick into one cache round trip.
stats_loader: PerLoopLoader[int, UserStatsType] = PerLoopLoader(_load_stats)


def as_datetime(timestamp: float | None) -> datetime | None:
    """A Unix time as an aware datetime (``None`` stays ``None``)."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


async def _load_states(user_ids: list[int]) -> list[tuple[bool, datetime | None]]:
    states = await asyncio.to_thread(presence_tracker().states, user_ids)
    found = [states.get(pk) for pk in user_ids]
    return [(s.online, as_datetime(s.last_seen)) if s else (False, None) for s in found]


# Batches ``User.online``/``lastSeenAt`` of one tick into one presence-store round trip.
presence_loader: PerLoopLoader[int, tuple[bool, datetime | None]] = PerLoopLoader(_load_states)


def signed_in(info: Info) -> bool:
    """Whether the operation (or the live audience it runs for) is a signed-in viewer's."""
    if isinstance(info.context, AudienceContext):
        return info.context.signed_in
    return viewer_id(info) is not None


async def user_presence(root: User, info: Info) -> tuple[bool, datetime | None]:
    """``(online, lastSeenAt)`` of a user; ``(False, None)`` for anonymous viewers."""
    if not signed_in(info):
        return False, None
    return await presence_loader().load(root.pk)


@strawberry_django.type(User, name="User")
class UserType(relay.Node):
    id: relay.NodeID[int]  # declared: strawberry then finds it once (tests/schema/test_node_ids.py)
    username: str
    date_joined: datetime
    profile: ProfileType

    @strawberry_django.field(only=["email"])
    async def email(self, root: User, info: Info) -> str | None:
        """Only the user themself sees their address (also right after signing up or in)."""
        # async: a sync resolver would cost a thread hop per live execution
        is_self = root.pk == viewer_id(info) or getattr(root, REVEAL_EMAIL, False)
        return root.email if is_self else None

    @strawberry_django.field(only=["id"])
    async def stats(self, root: User) -> UserStatsType:
        """Public posting stats, from the cache (never from before a write's response)."""
        return await stats_loader().load(root.pk)

    @strawberry_django.field(only=["id"])
    async def online(self, root: User, info: Info) -> bool:
        """Online now (``users.presence``); always false for anonymous viewers."""
        return (await user_presence(root, info))[0]

    @strawberry_django.field(only=["id"])
    async def last_seen_at(self, root: User, info: Info) -> datetime | None:
        """When last seen online; null if never, and always null for anonymous viewers."""
        return (await user_presence(root, info))[1]


@strawberry.type
class AuthPayload:
    user: UserType
    token: str


@strawberry.input
class CreateUserInput:
    username: str
    email: str
    password: str


@strawberry.input
class ProfileInput:
    website: str | None = None
    bio: str | None = None


@strawberry.type
class Query:
    @strawberry_django.field
    def me(self, info: Info) -> UserType | None:
        user = viewer(info)
        return user if isinstance(user, User) else None  # type: ignore[return-value]

    @strawberry_django.field
    def user(self, info: Info, id: strawberry.ID) -> UserType | None:
        pk = decode_pk(id, ["User"])
        if pk is None:
            return None
        return User.objects.filter(pk=pk, is_active=True).first()  # type: ignore[return-value]

    @connection(DjangoListConnection[UserType], default_first=20)
    def users(self, info: Info) -> Iterable[UserType]:
        return User.objects.filter(is_active=True).order_by("id")  # type: ignore[return-value]


@strawberry.type
class Mutation:
    @strawberry_django.mutation
    def create_user(self, info: Info, input: CreateUserInput) -> UserType:
        try:
            user = services.user_create(
                username=input.username, email=input.email, password=input.password
            )
        except ValidationError as exc:
            raise bad_user_input(exc) from exc
        setattr(user, REVEAL_EMAIL, True)
        return user  # type: ignore[return-value]

    @strawberry_django.mutation
    def login(self, info: Info, username: str, password: str) -> AuthPayload:
        request = info.context.request
        http_request = request if isinstance(request, HttpRequest) else None
        attempt = LoginAttempt(request, username, client_address(info))
        if attempt.is_limited():
            raise rate_limited("Too many failed sign-in attempts; try again later.")
        user = authenticate(http_request, username=username, password=password)
        if not isinstance(user, User):
            attempt.record_failure()
            raise unauthenticated("Invalid username or password.")
        if http_request is not None:
            login(http_request, user)
        setattr(user, REVEAL_EMAIL, True)
        return AuthPayload(user=user, token=token_issue(user=user))  # type: ignore[arg-type]

    @strawberry_django.mutation(extensions=[IsSignedIn()])
    def logout(self, info: Info) -> bool:
        request = info.context.request
        token = getattr(request, "auth_token", None)
        if token:
            token_revoke(token=token)
        if isinstance(request, HttpRequest):
            logout(request)
        return True

    @strawberry_django.mutation(extensions=[IsSignedIn()])
    def update_profile(self, info: Info, input: ProfileInput) -> ProfileType:
        try:
            profile = services.profile_update(
                user=require_user(info), website=input.website, bio=input.bio
            )
        except ValidationError as exc:
            raise bad_user_input(exc) from exc
        return profile  # type: ignore[return-value]
