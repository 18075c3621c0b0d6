"""CSRF: cookie-authenticated HTTP mutations need the token; bearer clients do not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from events.models import StatusChange
from tests.helpers import PASSWORD, error_codes

POST = 'mutation { createStatusChange(input: {status: "hello"}) { id } }'
LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }"


@pytest.fixture
def browser(alice: User) -> Client:
    """A browser-like client signed in to a session, enforcing CSRF like a real one."""
    client = Client(enforce_csrf_checks=True)
    client.get("/graphql/", headers={"Accept": "text/html"})  # GraphiQL sets csrftoken
    body = post(client, LOGIN, {"u": "alice", "p": PASSWORD}, csrf=True)
    assert "errors" not in body, body
    assert "sessionid" in client.cookies
    return client


def post(
    client: Client,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    csrf: bool = False,
    token: str | None = None,
) -> dict[str, Any]:
    headers = {}
    if csrf:
        headers["X-CSRFToken"] = client.cookies["csrftoken"].value
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = client.post(
        "/graphql/",
        data=json.dumps({"query": query, "variables": variables or {}}),
        content_type="application/json",
        headers=headers,
    )
    body: dict[str, Any] = response.json()
    body["status"] = response.status_code
    return body


def test_cookie_mutation_without_csrf_token_is_refused(browser: Client) -> None:
    body = post(browser, POST)
    assert body["status"] == 403
    assert error_codes(body) == ["FORBIDDEN"]
    assert not StatusChange.objects.exists()


def test_cookie_mutation_with_csrf_token_succeeds(browser: Client) -> None:
    body = post(browser, POST, csrf=True)
    assert body["status"] == 200 and "errors" not in body, body
    assert StatusChange.objects.get().actor.username == "alice"


def test_form_posts_with_the_session_cookie_are_refused(browser: Client) -> None:
    """What a cross-site HTML form could send (no custom header, no JSON type)."""
    response = browser.post("/graphql/", {"query": POST})
    assert response.status_code == 403
    assert not StatusChange.objects.exists()


def test_bearer_token_clients_need_no_csrf_token(alice_token: str) -> None:
    client = Client(enforce_csrf_checks=True)
    body = post(client, POST, token=alice_token)
    assert body["status"] == 200 and "errors" not in body, body


def test_bearer_token_wins_over_a_session_cookie_without_csrf(
    browser: Client, bob_token: str
) -> None:
    body = post(browser, POST, token=bob_token)
    assert body["status"] == 200 and "errors" not in body, body
    assert StatusChange.objects.get().actor.username == "bob"


def test_anonymous_requests_without_cookies_need_no_csrf_token(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    body = post(client, "{ me { id } }")
    assert body == {"data": {"me": None}, "status": 200}
