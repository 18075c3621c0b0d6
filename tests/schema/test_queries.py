"""Queries: privacy, pagination, the history, and a pinned query count."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from events.models import Comment, StatusChange, Visibility
from tests.helpers import error_codes, gql

pytestmark = pytest.mark.django_db

EVENTS_WITH_PROFILES = """
query { events(first: 50) { totalCount edges { node {
  id __typename actor { username profile { bio } }
  ... on StatusChange { status }
  ... on Comment { body }
} } } }"""


def seed_events(users: list[User], per_user: int) -> None:
    for user in users:
        for n in range(per_user):
            StatusChange.objects.create(actor=user, status=f"{user.username} {n}")
            Comment.objects.create(actor=user, body=f"comment {n}")


def count_queries(client: Client, query: str) -> tuple[int, dict]:
    with CaptureQueriesContext(connection) as queries:
        body = gql(client, query)
    return len(queries), body


def test_events_query_count_does_not_grow_with_rows(
    client: Client, make_user: Callable[..., User]
) -> None:
    seed_events([make_user()], per_user=1)
    few, body = count_queries(client, EVENTS_WITH_PROFILES)
    assert body["data"]["events"]["totalCount"] == 2

    seed_events([make_user() for _ in range(6)], per_user=4)
    many, body = count_queries(client, EVENTS_WITH_PROFILES)
    assert body["data"]["events"]["totalCount"] == 50
    assert len(body["data"]["events"]["edges"]) == 50
    assert many == few
    assert many <= 3  # count + page (subclasses, actor and profile joined)


def test_events_are_resolved_to_their_concrete_types(client: Client, alice: User) -> None:
    StatusChange.objects.create(actor=alice, status="s")
    Comment.objects.create(actor=alice, body="c")
    body = gql(client, EVENTS_WITH_PROFILES)
    nodes = [edge["node"] for edge in body["data"]["events"]["edges"]]
    assert [(n["__typename"], n.get("status"), n.get("body")) for n in nodes] == [
        ("Comment", None, "c"),
        ("StatusChange", "s", None),
    ]


def test_private_events_reach_only_their_author(
    client: Client, alice: User, bob: User, alice_token: str, bob_token: str
) -> None:
    public = StatusChange.objects.create(actor=alice, status="public")
    secret = StatusChange.objects.create(
        actor=alice, status="secret", visibility=Visibility.PRIVATE
    )
    Comment.objects.create(actor=bob, body="on secret", target=secret)

    def statuses(token: str | None) -> list[str]:
        body = gql(
            client,
            "{ events { totalCount edges { node { ... on StatusChange { status } } } } }",
            token=token,
        )
        events = body["data"]["events"]
        nodes = [e["node"].get("status") for e in events["edges"]]
        assert events["totalCount"] == len(nodes)
        return [s for s in nodes if s]

    assert statuses(None) == ["public"]
    assert statuses(bob_token) == ["public"]
    assert statuses(alice_token) == ["secret", "public"]

    secret_id = gql(
        client,
        "{ events(first: 1, kind: STATUS_CHANGE) { edges { node { id } } } }",
        token=alice_token,
    )["data"]["events"]["edges"][0]["node"]["id"]
    one = "query($id: ID!) { event(id: $id) { id } }"
    assert gql(client, one, {"id": secret_id})["data"]["event"] is None
    assert gql(client, one, {"id": secret_id}, bob_token)["data"]["event"] is None
    assert gql(client, one, {"id": secret_id}, alice_token)["data"]["event"] == {"id": secret_id}

    targets = gql(
        client,
        "{ events(kind: COMMENT) { edges { node { ... on Comment { target { id } } } } } }",
        token=bob_token,
    )
    assert targets["data"]["events"]["edges"] == [{"node": {"target": None}}]

    history = "{ activities { message } }"
    messages = [a["message"] for a in gql(client, history, token=bob_token)["data"]["activities"]]
    assert "alice changed status to 'secret'" not in messages
    assert "alice changed status to 'public'" in messages
    mine = [a["message"] for a in gql(client, history, token=alice_token)["data"]["activities"]]
    assert "alice changed status to 'secret'" in mine
    assert public.pk != secret.pk


def test_email_only_for_the_user_themself(client: Client, alice: User, alice_token: str) -> None:
    query = "{ users { totalCount edges { node { username email } } } }"
    assert gql(client, query)["data"]["users"]["edges"] == [
        {"node": {"username": "alice", "email": None}}
    ]
    assert gql(client, query, token=alice_token)["data"]["users"]["edges"] == [
        {"node": {"username": "alice", "email": "alice@example.com"}}
    ]


def test_user_by_id_and_events_by_actor(client: Client, alice: User, bob: User) -> None:
    StatusChange.objects.create(actor=alice, status="a")
    StatusChange.objects.create(actor=bob, status="b")
    users = gql(client, "{ users { edges { node { id username } } } }")["data"]["users"]["edges"]
    ids = {u["node"]["username"]: u["node"]["id"] for u in users}
    body = gql(client, "query($id: ID!) { user(id: $id) { username } }", {"id": ids["bob"]})
    assert body["data"]["user"] == {"username": "bob"}
    body = gql(
        client,
        "query($id: ID!) { events(actorId: $id) { edges { node { ... on StatusChange { status } } } } }",
        {"id": ids["bob"]},
    )
    assert body["data"]["events"]["edges"] == [{"node": {"status": "b"}}]
    for bad in ["nope", "", "VXNlcjo5OTk="]:
        assert gql(client, "query($id: ID!) { user(id: $id) { id } }", {"id": bad})["data"] == {
            "user": None
        }


def test_me_is_null_when_anonymous(client: Client) -> None:
    assert gql(client, "{ me { id } }")["data"] == {"me": None}


def test_connections_paginate_with_default_and_cap(
    client: Client, make_user: Callable[..., User]
) -> None:
    for _ in range(25):
        make_user()
    body = gql(
        client, "{ users { totalCount pageInfo { hasNextPage endCursor } edges { cursor } } }"
    )
    page = body["data"]["users"]
    assert page["totalCount"] == 25
    assert len(page["edges"]) == 20
    assert page["pageInfo"]["hasNextPage"] is True
    rest = gql(
        client,
        "query($after: String) { users(after: $after) { edges { cursor } pageInfo { hasNextPage } } }",
        {"after": page["pageInfo"]["endCursor"]},
    )["data"]["users"]
    assert len(rest["edges"]) == 5
    assert rest["pageInfo"]["hasNextPage"] is False
    for first in [101, -1]:
        body = gql(client, "query($f: Int) { users(first: $f) { totalCount } }", {"f": first})
        assert error_codes(body) == ["BAD_USER_INPUT"]


def test_activities_history_pages_with_cursors(
    client: Client, make_user: Callable[..., User]
) -> None:
    for _ in range(5):
        make_user()
    first = gql(client, "{ activities(first: 2) { cursor message } }")["data"]["activities"]
    assert [a["message"] for a in first] == ["user1 joined", "user2 joined"]
    rest = gql(
        client,
        "query($a: String) { activities(after: $a) { message } }",
        {"a": first[-1]["cursor"]},
    )["data"]["activities"]
    assert [a["message"] for a in rest] == ["user3 joined", "user4 joined", "user5 joined"]
    for bad_after in ["garbage", "YWN0aXZpdHk6eA=="]:
        body = gql(
            client, "query($a: String) { activities(after: $a) { message } }", {"a": bad_after}
        )
        assert error_codes(body) == ["BAD_USER_INPUT"]
    assert error_codes(gql(client, "{ activities(first: 1000) { message } }")) == ["BAD_USER_INPUT"]


def test_deleted_events_activity_keeps_event_id(client: Client, alice: User) -> None:
    status = StatusChange.objects.create(actor=alice, status="gone soon")
    status.delete()
    rows = gql(client, "{ activities { kind verb eventId event { id } } }")["data"]["activities"]
    created, deleted = [r for r in rows if r["kind"] == "STATUS_CHANGE"]
    assert created["event"] is None  # replayed after its event was deleted
    assert created["eventId"] == deleted["eventId"] is not None
    assert deleted["verb"] == "DELETED"


def test_unexpected_errors_are_masked(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from events import selectors

    def explode(**_: object) -> None:
        raise RuntimeError("SELECT secret FROM internals")

    monkeypatch.setattr(selectors, "activities_after", explode)
    body = gql(client, "{ activities { message } }")
    assert error_codes(body) == ["INTERNAL"]
    assert "SELECT" not in str(body)
