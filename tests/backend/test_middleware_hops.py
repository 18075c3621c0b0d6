"""The async middleware stack: Django's hooks run on the loop unless they do I/O.

``backend.middleware`` calls the hooks of Django's middleware inline and sends them to
a thread only for I/O (a session to save, messages to store). These tests go through
the ASGI handler (Django's ``AsyncClient``, the async path daphne takes): they count
the trips to a worker thread of a bearer-token mutation, and run the paths that do
I/O (a session login, a CSRF-checked cookie mutation, admin messages) end to end.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from events.models import StatusChange
from tests.helpers import PASSWORD, count_hops
from users.tokens import token_issue

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("close_worker_connections"),
]

POST = 'mutation { createStatusChange(input: {status: "on the loop"}) { id } }'
LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }"
ME = "{ me { username } }"


async def graphql(
    client: AsyncClient, query: str, variables: dict[str, Any] | None = None, **headers: str
) -> dict[str, Any]:
    response = await client.post(
        "/graphql/",
        data=json.dumps({"query": query, "variables": variables or {}}),
        content_type="application/json",
        headers=headers,
    )
    body: dict[str, Any] = response.json()
    body["status"] = response.status_code
    return body


async def test_a_bearer_mutation_hops_to_a_thread_only_for_the_database(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await sync_to_async(token_issue)(user=alice)
    client = AsyncClient()
    assert "errors" not in await graphql(client, POST, Authorization=f"Bearer {token}")
    hops = count_hops(monkeypatch)
    body = await graphql(client, POST, Authorization=f"Bearer {token}")
    assert "errors" not in body and body["status"] == 200, body
    middleware_hooks = [name for name in hops.calls if "Middleware." in name]
    assert middleware_hooks == []
    # The token's user, the resolver, request_started's and request_finished's receivers
    # (database connections are per thread): Django's stack alone made 19.
    assert sum(hops.calls.values()) <= 4, hops.calls
    assert await StatusChange.objects.filter(status="on the loop").acount() == 2


async def test_a_session_login_is_saved_and_checked_against_csrf(alice: User) -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    page = await client.get("/graphql/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "csrftoken" in client.cookies
    csrf = client.cookies["csrftoken"].value
    body = await graphql(client, LOGIN, {"u": "alice", "p": PASSWORD}, X_CSRFToken=csrf)
    assert "errors" not in body, body
    assert "sessionid" in client.cookies  # saved by SessionMiddleware, in a thread
    csrf = client.cookies["csrftoken"].value  # rotated at login
    me = await graphql(client, ME, X_CSRFToken=csrf)
    assert me["data"] == {"me": {"username": "alice"}}  # the session was read
    refused = await graphql(client, POST)
    assert refused["status"] == 403  # a session and no token: the CSRF check ran
    posted = await graphql(client, POST, X_CSRFToken=csrf)
    assert "errors" not in posted, posted
    assert await StatusChange.objects.filter(status="on the loop").acount() == 1


async def test_admin_messages_are_stored_and_shown(admin_user: User) -> None:
    client = AsyncClient()
    await client.aforce_login(admin_user)
    page = f"/admin/auth/user/{admin_user.pk}/change/"
    response = await client.post(
        "/admin/auth/user/",
        {"action": "delete_selected", "index": "0"},
    )
    assert response.status_code == 302  # nothing selected: a warning message
    followed = await client.get(response.headers["Location"])
    assert "Items must be selected" in followed.content.decode()
    assert (await client.get(page)).status_code == 200
