"""The notification API: the caller's own inbox, its count, marking read, live."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client
from pytest_django import DjangoCaptureOnCommitCallbacks

from events import notifications, services
from events.cursors import encode_notification_cursor
from events.models import Notification, Visibility
from schema.ids import encode_global_id
from schema.live.engine import get_engine
from schema.schema import schema
from tests.helpers import error_codes, gql
from tests.schema.live_sinks import RecordingSink, subscribe

INBOX = """query($first: Int, $after: String, $unread: Boolean) {
  notifications(first: $first, after: $after, unreadOnly: $unread) {
    edges { cursor node { id cursor kind read createdAt
      activity { kind message actor { username } event { ... on StatusChange { status } } } } }
    pageInfo { hasNextPage endCursor }
  }
  unreadNotificationCount
}"""
MARK = "mutation($ids: [ID!], $upTo: String) { markNotificationsRead(ids: $ids, upTo: $upTo) }"
LIVE = """subscription($after: String) { notifications(after: $after) {
  unreadCount notification { cursor kind activity { message } } } }"""


def mention(actor: User, text: str, visibility: str = Visibility.PUBLIC) -> Any:
    return services.status_change_create(actor=actor, status=text, visibility=visibility)


@pytest.mark.django_db
def test_the_inbox_is_the_callers_own_newest_first(
    client: Client, alice: User, bob: User, alice_token: str, bob_token: str
) -> None:
    mention(alice, "one @bob")
    mention(alice, "two @bob")
    mention(bob, "for @alice")
    body = gql(client, INBOX, {"first": 1}, bob_token)
    page = body["data"]["notifications"]
    assert [e["node"]["activity"]["event"]["status"] for e in page["edges"]] == ["two @bob"]
    assert page["pageInfo"]["hasNextPage"] and body["data"]["unreadNotificationCount"] == 2
    node = page["edges"][0]["node"]
    assert node["kind"] == "MENTION" and node["read"] is False
    assert node["activity"]["actor"]["username"] == "alice"
    after = page["pageInfo"]["endCursor"]
    older = gql(client, INBOX, {"after": after}, bob_token)["data"]["notifications"]
    assert [e["node"]["activity"]["event"]["status"] for e in older["edges"]] == ["one @bob"]
    alices = gql(client, INBOX, {}, alice_token)["data"]["notifications"]["edges"]
    assert [e["node"]["activity"]["message"] for e in alices] == [
        "bob changed status to 'for @alice'"
    ]


@pytest.mark.django_db
def test_marking_read_by_ids_by_cursor_and_all(
    client: Client, alice: User, bob: User, bob_token: str, alice_token: str
) -> None:
    for n in range(4):
        mention(alice, f"@bob {n}")
    mention(bob, "@alice")
    edges = gql(client, INBOX, {}, bob_token)["data"]["notifications"]["edges"]
    newest, _, second, oldest = (edge["node"] for edge in edges)
    assert gql(client, MARK, {"ids": [newest["id"]]}, bob_token)["data"] == {
        "markNotificationsRead": 3
    }
    assert (
        gql(client, MARK, {"upTo": second["cursor"]}, bob_token)["data"]["markNotificationsRead"]
        == 1
    )
    unread = gql(client, INBOX, {"unread": True}, bob_token)["data"]["notifications"]["edges"]
    assert len(unread) == 1 and oldest["cursor"] != unread[0]["node"]["cursor"]
    assert gql(client, MARK, {}, bob_token)["data"]["markNotificationsRead"] == 0
    # bob's ids do nothing to alice's inbox, and alice's to bob's
    alice_edge = gql(client, INBOX, {}, alice_token)["data"]["notifications"]["edges"][0]
    assert (
        gql(client, MARK, {"ids": [newest["id"]]}, alice_token)["data"]["markNotificationsRead"]
        == 1
    )
    assert (
        gql(client, MARK, {"ids": [alice_edge["node"]["id"]]}, bob_token)["data"][
            "markNotificationsRead"
        ]
        == 0
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"ids": ["not-an-id"]}, "ids"),
        ({"ids": [encode_global_id("User", 1)]}, "ids"),
        ({"upTo": "junk"}, "upTo"),
        ({"upTo": "YWN0aXZpdHk6MQ=="}, "upTo"),  # an activity cursor is not a notification's
        ({"ids": [], "upTo": "junk"}, "ids"),
        ({"ids": [encode_global_id("Notification", n) for n in range(101)]}, "ids"),
    ],
)
def test_bad_mark_read_input_is_bad_user_input(
    client: Client, bob_token: str, variables: dict[str, Any], field: str
) -> None:
    body = gql(client, MARK, variables, bob_token)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert field in body["errors"][0]["extensions"]["fields"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    [INBOX, "{ unreadNotificationCount }", MARK, "{ notifications { edges { node { id } } } }"],
)
def test_anonymous_callers_are_unauthenticated(client: Client, query: str) -> None:
    assert "UNAUTHENTICATED" in error_codes(gql(client, query))


# Live ---------------------------------------------------------------------------------


async def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


def updates(sink: RecordingSink) -> list[tuple[int, str | None]]:
    return [
        (
            p["data"]["notifications"]["unreadCount"],
            (p["data"]["notifications"]["notification"] or {}).get("kind"),
        )
        for p in sink.payloads
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_worker_connections")
async def test_the_subscription_replays_streams_and_follows_the_count(
    make_user: Callable[..., User],
) -> None:
    alice, bob, cy = await database_sync_to_async(
        lambda: (make_user("alice"), make_user("bob"), make_user("cy"))
    )()
    await sync_to_async(mention)(alice, "@bob first")
    await sync_to_async(mention)(alice, "@bob second")
    first = await sync_to_async(
        lambda: Notification.objects.filter(recipient=bob).order_by("id")[0]
    )()
    engine = get_engine(schema)
    tab1, tab2, cys = RecordingSink(), RecordingSink(), RecordingSink()
    await subscribe(engine, tab1, LIVE, {"after": encode_notification_cursor(first.pk)}, bob)
    await subscribe(engine, tab2, LIVE, None, bob)
    await subscribe(engine, cys, LIVE, None, cy)
    assert updates(tab1) == [(2, "MENTION")]  # replayed after `after`, with the count
    assert updates(tab2) == []  # live only
    await sync_to_async(mention)(alice, "@bob third")
    await eventually(lambda: len(tab1.payloads) == 2 and len(tab2.payloads) == 1)
    assert updates(tab2) == [(3, "MENTION")]
    await sync_to_async(notifications.notifications_mark_read)(recipient_id=bob.pk)
    await eventually(lambda: len(tab1.payloads) == 3 and len(tab2.payloads) == 2)
    assert updates(tab1)[-1] == updates(tab2)[-1] == (0, None)  # both tabs agree
    assert cys.payloads == []  # nobody sees another user's notifications
    await sync_to_async(mention)(alice, "now @cy")  # the same document, her own inbox
    await eventually(lambda: len(cys.payloads) == 1)
    assert updates(cys) == [(1, "MENTION")]
    assert (len(tab1.payloads), len(tab2.payloads)) == (3, 2)  # nothing of cy's
    for sink in (tab1, tab2):
        cursors = [p["data"]["notifications"]["notification"] for p in sink.payloads]
        assert len({c["cursor"] for c in cursors if c}) == len([c for c in cursors if c])


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_worker_connections")
async def test_an_anonymous_subscription_is_unauthenticated() -> None:
    sink = RecordingSink()
    assert await subscribe(get_engine(schema), sink, LIVE) is None
    codes = [(e.extensions or {}).get("code") for r in sink.results for e in r.errors or []]
    assert codes == ["UNAUTHENTICATED"] and sink.completed


@pytest.mark.django_db
def test_the_inbox_query_is_a_bounded_number_of_queries(
    client: Client,
    alice: User,
    bob: User,
    bob_token: str,
    django_assert_max_num_queries: Any,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    for n in range(30):
        mention(alice, f"@bob {n}")
    with django_assert_max_num_queries(8):
        body = gql(client, INBOX, {"first": 30}, bob_token)
    assert len(body["data"]["notifications"]["edges"]) == 30
