"""Fixtures shared by the whole suite: users, tokens and captured publishes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connections
from django.test import Client

from events import services
from tests.helpers import PASSWORD
from users.tokens import token_issue


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Ids of the activities handed to the publisher, each JSON round-tripped."""
    sent: list[int] = []

    def record(activity_id: int) -> None:
        sent.append(json.loads(json.dumps({"id": activity_id}))["id"])

    monkeypatch.setattr(services, "activity_publish", record)
    yield sent


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    """Create a user (with its profile, through the real signal)."""
    counter = iter(range(1, 10_000))

    def make(username: str | None = None, **fields: object) -> User:
        name = username or f"user{next(counter)}"
        user = User(username=name, email=f"{name}@example.com", **fields)
        user.set_password(PASSWORD)
        user.save()
        return user

    return make


@pytest.fixture
def alice(make_user: Callable[..., User]) -> User:
    return make_user("alice")


@pytest.fixture
def bob(make_user: Callable[..., User]) -> User:
    return make_user("bob")


@pytest.fixture
def alice_token(alice: User) -> str:
    return token_issue(user=alice)


@pytest.fixture
def bob_token(bob: User) -> str:
    return token_issue(user=bob)


@pytest.fixture
def client() -> Client:
    return Client()


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    """Each test starts with no login-throttling counts (Django's cache is per process)."""
    cache.clear()
    yield


@pytest.fixture
async def close_worker_connections() -> AsyncIterator[None]:
    """Close the database connections of ``sync_to_async``'s worker thread afterwards.

    The hub's listener keeps its connection open between reads; PostgreSQL cannot drop
    the test database while that session is open.
    """
    yield
    await sync_to_async(connections.close_all)()
