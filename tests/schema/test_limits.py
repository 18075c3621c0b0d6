"""Document limits (depth, aliases, tokens) and failed-login throttling, over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from tests.e2e.servers import free_port
from tests.helpers import PASSWORD, error_codes, gql

LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }"


def deep_query(depth: int) -> str:
    """A valid query of exactly ``depth`` levels (``Comment.target`` nests without end)."""
    selection = "id"
    for _ in range(depth - 3):
        selection = f"... on Comment {{ target {{ {selection} }} }}"
    return f"{{ events {{ edges {{ node {{ {selection} }} }} }} }}"


def test_query_depth_is_limited(client: Client) -> None:
    limit = settings.PULSE_MAX_QUERY_DEPTH
    allowed = gql(client, deep_query(limit))
    assert "errors" not in allowed, allowed
    refused = gql(client, deep_query(limit + 1))
    assert refused["data"] is None
    assert error_codes(refused) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "exceeds maximum operation depth" in refused["errors"][0]["message"]


def test_aliases_are_limited(client: Client, db: None) -> None:
    limit = settings.PULSE_MAX_ALIASES
    allowed = gql(client, "{ " + " ".join(f"a{n}: me {{ id }}" for n in range(limit)) + " }")
    assert "errors" not in allowed, allowed
    refused = gql(client, "{ " + " ".join(f"a{n}: me {{ id }}" for n in range(limit + 1)) + " }")
    assert refused["data"] is None
    assert error_codes(refused) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "aliases" in refused["errors"][0]["message"]


def document_of_tokens(total: int) -> str:
    """A valid document (run with operationName "Main") of exactly ``total`` tokens."""
    operations, padding = divmod(total - 8, 5)  # "query Main { me { id } }" is 8 tokens
    main = "query Main { me { id " + "__typename " * padding + "} }"
    return " ".join([main, *(f"query Q{n} {{ __typename }}" for n in range(operations))])


def test_tokens_are_limited(client: Client, db: None) -> None:
    limit = settings.PULSE_MAX_TOKENS
    for total, allowed in ((limit, True), (limit + 1, False)):
        response = client.post(
            "/graphql/",
            data=json.dumps({"query": document_of_tokens(total), "operationName": "Main"}),
            content_type="application/json",
        )
        body = response.json()
        if allowed:
            assert body == {"data": {"me": None}}
        else:
            assert body["data"] is None
            assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
            assert "tokens" in body["errors"][0]["message"]


def test_introspection_is_not_refused_for_its_depth(client: Client, db: None) -> None:
    # GraphiQL's schema query nests `ofType` far deeper than the limit.
    of_type = "name"
    for _ in range(settings.PULSE_MAX_QUERY_DEPTH + 2):
        of_type = f"name ofType {{ {of_type} }}"
    body = gql(client, f"{{ __schema {{ types {{ fields {{ type {{ {of_type} }} }} }} }} }}")
    assert "errors" not in body


class TestLoginThrottling:
    def test_failures_per_username_lock_that_username_only(
        self, client: Client, alice: User, bob: User
    ) -> None:
        for _ in range(settings.PULSE_LOGIN_MAX_FAILURES):
            body = login(client, "alice", "wrong", "10.0.0.1")
            assert error_codes(body) == ["UNAUTHENTICATED"]
        # Even the right password is refused now, from another address too.
        locked = login(client, "alice", PASSWORD, "10.0.0.2")
        assert error_codes(locked) == ["RATE_LIMITED"]
        assert locked["data"] is None
        other = login(client, "bob", PASSWORD, "10.0.0.2")
        assert "errors" not in other

    def test_failures_per_address_lock_that_address_only(self, client: Client, alice: User) -> None:
        for n in range(settings.PULSE_LOGIN_MAX_FAILURES):
            body = login(client, f"guess{n}", "wrong", "10.0.0.3")
            assert error_codes(body) == ["UNAUTHENTICATED"]
        locked = login(client, "alice", PASSWORD, "10.0.0.3")
        assert error_codes(locked) == ["RATE_LIMITED"]
        elsewhere = login(client, "alice", PASSWORD, "10.0.0.4")
        assert "errors" not in elsewhere

    def test_unknown_usernames_are_throttled_like_known_ones(
        self, client: Client, alice: User
    ) -> None:
        answers: list[tuple[str, dict[str, Any]]] = []
        for username in ("alice", "nobody-by-this-name"):
            for n in range(settings.PULSE_LOGIN_MAX_FAILURES + 1):
                address = f"10.1.{len(answers)}.{n}"
                answers.append((username, login(client, username, "x", address)))
        known = [body for name, body in answers if name == "alice"]
        unknown = [body for name, body in answers if name != "alice"]
        assert known == unknown
        assert error_codes(known[-1]) == ["RATE_LIMITED"]


def login(client: Client, username: str, password: str, address: str) -> dict[str, Any]:
    """Call ``login`` as a client at IP ``address``."""
    response = client.post(
        "/graphql/",
        data=json.dumps({"query": LOGIN, "variables": {"u": username, "p": password}}),
        content_type="application/json",
        REMOTE_ADDR=address,
    )
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(autouse=True)
def _db(db: None) -> None:
    """Every test here touches the database (sign-in, users)."""


def test_login_is_not_throttled_but_logged_when_the_cache_is_down(
    client: Client, alice: User, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis outage must not lock everyone out: logins work, a warning says why."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        }
    }
    for _ in range(settings.PULSE_LOGIN_MAX_FAILURES + 1):
        assert error_codes(login(client, "alice", "wrong", "10.2.0.1")) == ["UNAUTHENTICATED"]
    assert "errors" not in login(client, "alice", PASSWORD, "10.2.0.1")
    assert "Login throttling unavailable" in caplog.text
