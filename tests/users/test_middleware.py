"""The HTTP middleware stack runs as one synchronous chain under ASGI.

Django's own middlewares say they are async-capable; in an async stack each of their
methods crosses to a thread and back. ``BearerTokenMiddleware`` is synchronous only and
last, so Django enters the whole stack with one thread hop: a mutation crosses threads
five times (request_started, the stack, CSRF's view check, the resolver, closing the
response) where the async stack made it cross nineteen.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from users.tokens import token_issue

pytestmark = pytest.mark.django_db(transaction=True)

CREATE_STATUS = 'mutation { createStatusChange(input: {status: "hops"}) { status } }'


@pytest.fixture
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every ``sync_to_async`` call made while the test runs, by the function it ran."""
    hops: Counter[str] = Counter()
    call = SyncToAsync.__call__

    async def counted(self: SyncToAsync[Any, Any], *args: Any, **kwargs: Any) -> Any:
        hops[getattr(self.func, "__qualname__", type(self.func).__qualname__)] += 1
        return await call(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    return hops


async def post(client: AsyncClient, query: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql/", json.dumps({"query": query}), content_type="application/json", headers=headers
    )
    body: dict[str, Any] = json.loads(response.content)
    return body


async def test_a_mutation_crosses_threads_five_times(thread_hops: Counter[str]) -> None:
    alice = await User.objects.acreate(username="alice")
    token = await sync_to_async(token_issue)(user=alice)
    client = AsyncClient()
    thread_hops.clear()
    body = await post(client, CREATE_STATUS, token)
    assert body == {"data": {"createStatusChange": {"status": "hops"}}}
    assert sum(thread_hops.values()) <= 5, thread_hops
    assert not [name for name in thread_hops if "process_request" in name], thread_hops


async def test_a_bad_token_is_answered_from_the_same_chain(thread_hops: Counter[str]) -> None:
    body = await post(AsyncClient(), CREATE_STATUS, "pulse_not-a-token")
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert sum(thread_hops.values()) <= 4, thread_hops  # + django.request's 401 line
