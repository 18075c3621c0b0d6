"""Hostile input through the real HTTP endpoint, for every argument of every operation.

Property tests (hypothesis) send huge and empty strings, control characters, astral,
RTL and unpaired-surrogate text, values of the wrong JSON type, malformed ids and
cursors and out-of-range page sizes as GraphQL variables to ``POST /graphql/``. Every
answer must be JSON, either a success or errors that each carry one of the contract's
codes (never ``INTERNAL``), with no stack trace, SQL or exception name in a message; a
mutation that fails must leave every row of the database as it was.

Subscriptions (``notifications`` and ``presence``) go through the live engine itself, as
every transport's adapter hands them over (``schema.live.engine``), with the same rules
for every result, rejection, failure and streamed payload.

Presence (``onlineUsers(first:)`` and the ``presence`` subscription, which takes no
argument) is held to exact outcomes besides: an argument GraphQL cannot read is
``GRAPHQL_VALIDATION_FAILED``, an anonymous caller ``UNAUTHENTICATED``, a ``first`` out
of 0..100 ``BAD_USER_INPUT``, anything else the users online.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in
from django.core.cache import cache
from django.db import models
from django.http import HttpResponse
from django.test import Client, override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from events import services as event_services
from events.cursors import encode_notification_cursor
from events.models import Activity, Comment, Event, Notification, StatusChange, Visibility
from schema.ids import encode_activity_cursor, encode_global_id
from schema.live.engine import get_engine
from schema.schema import schema
from tests.helpers import PASSWORD
from tests.schema.live_sinks import RecordingSink, subscribe
from users.models import ApiToken, Profile
from users.presence import presence_tracker, reset_presence_tracker
from users.tokens import token_issue

pytestmark = pytest.mark.django_db

HOSTILE = settings(
    max_examples=60,
    deadline=None,
    database=None,  # keep no example database in the working tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Operations -------------------------------------------------------------------------

CREATE_USER = """
mutation($input: CreateUserInput!) { createUser(input: $input) { id username email } }"""
LOGIN = """
mutation($username: String!, $password: String!) {
  login(username: $username, password: $password) { token user { id } }
}"""
UPDATE_PROFILE = """
mutation($input: ProfileInput!) { updateProfile(input: $input) { website bio } }"""
CREATE_STATUS_CHANGE = """
mutation($input: CreateStatusChangeInput!) {
  createStatusChange(input: $input) { id status visibility }
}"""
UPDATE_STATUS_CHANGE = """
mutation($id: ID!, $status: String!) { updateStatusChange(id: $id, status: $status) { id } }"""
CREATE_COMMENT = """
mutation($input: CreateCommentInput!) {
  createComment(input: $input) { id body visibility target { id } }
}"""
UPDATE_COMMENT = """
mutation($id: ID!, $body: String!) { updateComment(id: $id, body: $body) { id body } }"""
DELETE_EVENT = "mutation($id: ID!) { deleteEvent(id: $id) }"
USER = "query($id: ID!) { user(id: $id) { id username } }"
EVENT = "query($id: ID!) { event(id: $id) { id actor { id } } }"
USERS = """
query($first: Int, $after: String, $last: Int, $before: String) {
  users(first: $first, after: $after, last: $last, before: $before) {
    totalCount edges { cursor node { id } } pageInfo { hasNextPage endCursor }
  }
}"""
EVENTS = """
query($first: Int, $after: String, $last: Int, $before: String, $kind: EventKind, $actorId: ID) {
  events(first: $first, after: $after, last: $last, before: $before, kind: $kind, actorId: $actorId) {
    totalCount edges { cursor node { id } } pageInfo { hasNextPage endCursor }
  }
}"""
ACTIVITIES = """
query($after: String, $first: Int) { activities(after: $after, first: $first) { cursor eventId } }
"""
NOTIFICATIONS = """
query($first: Int, $after: String, $last: Int, $before: String, $unreadOnly: Boolean) {
  notifications(
    first: $first, after: $after, last: $last, before: $before, unreadOnly: $unreadOnly
  ) {
    totalCount
    edges { cursor node { id cursor kind read activity { message eventId event { id } } } }
    pageInfo { hasNextPage endCursor }
  }
  unreadNotificationCount
}"""
MARK_NOTIFICATIONS_READ = """
mutation($ids: [ID!], $upTo: String) { markNotificationsRead(ids: $ids, upTo: $upTo) }"""
LIVE_NOTIFICATIONS = """
subscription($after: String) {
  notifications(after: $after) { unreadCount notification { id cursor kind activity { message } } }
}"""

ONLINE_USERS = """
query($first: Int) { onlineUsers(first: $first) { id username online lastSeenAt } }"""
LIVE_PRESENCE = """
subscription { presence { online lastSeenAt user { id username online lastSeenAt } } }"""
# ``presence`` declares no argument: any it is given is refused before it runs.
LIVE_PRESENCE_WITH_ARGUMENTS = [
    "subscription($after: String) { presence(after: $after) { online } }",
    "subscription($first: Int) { presence(first: $first) { online } }",
]

# The contract's codes, narrowed to those each operation can legitimately answer with.
VALIDATION = "GRAPHQL_VALIDATION_FAILED"
QUERY_CODES = frozenset({VALIDATION, "BAD_USER_INPUT"})
NODE_CODES = frozenset({VALIDATION})  # a malformed or unknown id is `null`, not an error
CREATE_CODES = frozenset({VALIDATION, "BAD_USER_INPUT", "UNAUTHENTICATED"})
LOGIN_CODES = frozenset({VALIDATION, "BAD_USER_INPUT", "UNAUTHENTICATED", "RATE_LIMITED"})
CHANGE_CODES = CREATE_CODES | {"NOT_FOUND", "FORBIDDEN"}
INBOX_CODES = QUERY_CODES | {"UNAUTHENTICATED"}  # also ``onlineUsers``: signed-in only
MARK_READ_CODES = CREATE_CODES
LIVE_CODES = frozenset({VALIDATION, "BAD_USER_INPUT", "UNAUTHENTICATED"})

# Internals that must never reach a client, in any message.
LEAK = re.compile(
    r"Traceback|File \"|\.py\b|site-packages|SELECT|INSERT|UPDATE |DELETE FROM|sqlite|psycopg"
    r"|\b[A-Z]\w*(?:Error|Exception|DoesNotExist)\b|object at 0x|int\(\)|codec can't"
    r"|Incorrect padding|datatype mismatch|NUL \(0x00\)"
)


# Values ---------------------------------------------------------------------------


class Omitted:
    """Leave this variable or input field out of the request."""

    def __repr__(self) -> str:
        return "OMIT"


OMIT = Omitted()


@dataclass(frozen=True)
class Real:
    """The id (or cursor) of an object the test's world holds, looked up when sending."""

    name: str


def b64(text: str, *, urlsafe: bool = False, padded: bool = True) -> str:
    """``text`` in base64, the way ids and cursors wrap their payload."""
    raw = text.encode("utf-8", "surrogatepass")
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()
    return encoded if padded else encoded.rstrip("=")


def leaks(text: str) -> bool:
    """Whether ``text`` shows any sign of the server's internals."""
    return LEAK.search(text) is not None


SAMPLE_TEXTS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\udbff\udc00\udc00",
    "😀",
    "\U0010ffff",
    "\u202eevil\u202c",
    "שלום عليكم",
    "e\u0301\u0301\u0301",
    "\ufeff\u200b\u2028\u2029\u0085",
    "\r\n\t\x0b\x0c\x1b[31m\x7f",
    "' OR '1'='1",
    "'; DROP TABLE auth_user; --",
    '" OR ""="',
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "%s%s%n%x",
    "{{7*7}}${7*7}",
    "null",
    "None",
    "undefined",
    "NaN",
    "-1",
    "0",
    "https://example.com",
    "javascript:alert(1)",
    "alice",
    "alice@example.com",
    PASSWORD,
]
REPEATED_PIECES = ["x", "é", "😀", "\u202e", "\x00", "\ud800", "e\u0301", " ", "\n", "A1"]
LENGTHS = [0, 1, 150, 279, 280, 281, 999, 1000, 1001, 4999, 5000, 5001, 20_000]

any_code_point = st.characters(exclude_categories=())  # controls, surrogates, astral
hostile_text: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(SAMPLE_TEXTS),
    st.builds(
        lambda piece, n: piece * n, st.sampled_from(REPEATED_PIECES), st.sampled_from(LENGTHS)
    ),
    st.text(any_code_point, max_size=300),
).filter(lambda text: not leaks(text))

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63, -(2**63), 2**64, 10**100]),
    st.floats(),  # NaN and infinities too: Python's JSON writes and reads them
    hostile_text,
)
any_json: st.SearchStrategy[Any] = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8).filter(lambda key: not leaks(key)), inner, max_size=3)
    ),
    max_leaves=8,
)


def mostly(expected: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a value of the expected type, sometimes any JSON value or nothing at all."""
    return st.one_of(expected, expected, expected, any_json, st.just(OMIT))


def input_object(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An input object of ``fields``, sometimes with an unknown one, sometimes not an object."""
    known = st.fixed_dictionaries(fields)
    with_unknown = st.builds(lambda known, extra: {**known, "bogus": extra}, known, any_json)
    return st.one_of(known, known, known, with_unknown, any_json, st.just(OMIT))


TYPE_NAMES = [
    "User",
    "StatusChange",
    "Comment",
    "Event",
    "Activity",
    "Profile",
    "ApiToken",
    "Node",
    "arrayconnection",
    "activity",
    "user",
    "Notification",
    "notification",
    "",
]
NUMBER_TEXTS = [
    *["0", "-1", "01", "+1", " 1", "1 ", "1_000", "0x1f", "1e3", "1.5", "1:2", "١٢", "²"],
    *["9" * 18, "9" * 19, "9" * 40, "", "abc"],
]
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(NUMBER_TEXTS),
    hostile_text,
)
opaque_like = st.builds(
    lambda type_name, number, urlsafe, padded: b64(
        f"{type_name}:{number}", urlsafe=urlsafe, padded=padded
    ),
    st.sampled_from(TYPE_NAMES),
    NUMBERS,
    st.booleans(),
    st.booleans(),
)
junk_base64 = st.binary(max_size=64).map(lambda raw: base64.b64encode(raw).decode())
REAL_IDS = [
    "user:alice",
    "user:bob",
    "event:alice_public",
    "event:alice_private",
    "event:alice_comment",
    "event:bob_private",
    "event:bob_comment",
    "swapped:alice_public_as_comment",
    "swapped:alice_comment_as_status",
    "swapped:alice_public_as_user",
]
REAL_CURSORS = ["connection:first_item", "activity:first", "activity:last"]
REAL_NOTIFICATION_IDS = ["notification:alice", "notification:bob"]
REAL_NOTIFICATION_CURSORS = [
    "notification-cursor:alice",
    "notification-cursor:bob",
    "notification-cursor:zero",
]
ids = mostly(
    st.one_of(
        hostile_text,
        opaque_like,
        junk_base64,
        st.integers(),  # ID accepts integers
        st.sampled_from([Real(name) for name in REAL_IDS]),
    )
)
cursors = mostly(
    st.one_of(
        hostile_text,
        opaque_like,
        junk_base64,
        st.none(),
        st.sampled_from([Real(name) for name in REAL_CURSORS]),
    )
)
page_sizes = mostly(
    st.one_of(
        st.sampled_from([0, 1, 2, 50, 99, 100, 101, -1, -100, 2**31 - 1, 2**31, -(2**31)]),
        st.sampled_from([-(2**31) - 1, 2**63, -(2**63), 2**64, 10**100]),
        st.integers(),
        st.none(),
    )
)
strings = mostly(hostile_text)
optional_strings = mostly(st.one_of(hostile_text, st.none()))


def enum_values(names: Iterable[str]) -> st.SearchStrategy[Any]:
    """Values of an enum, their near misses, and anything else."""
    names = list(names)
    near_misses = (
        [n.lower() for n in names] + [f"{n} " for n in names] + [f"{n}\x00" for n in names]
    )
    return mostly(st.one_of(st.sampled_from(names + near_misses + ["", "SECRET"]), st.none()))


flags = mostly(st.one_of(st.booleans(), st.none(), st.sampled_from(["true", 0, 1, "false"])))
notification_id = st.one_of(
    hostile_text,
    opaque_like,
    junk_base64,
    st.integers(),
    st.sampled_from([Real(name) for name in (*REAL_IDS, *REAL_NOTIFICATION_IDS)]),
)
notification_ids = mostly(
    st.one_of(
        st.lists(st.one_of(notification_id, notification_id, st.none(), any_json), max_size=6),
        st.builds(  # at and around the cap on how many ids one call takes
            lambda n, name: [Real(name)] * n,
            st.sampled_from([99, 100, 101, 1000]),
            st.sampled_from(REAL_NOTIFICATION_IDS),
        ),
        notification_id,  # one value where a list is expected: GraphQL makes it a list
        st.none(),
    )
)
notification_cursors = mostly(
    st.one_of(
        hostile_text,
        opaque_like,
        junk_base64,
        st.none(),
        st.builds(
            lambda number, urlsafe: b64(f"notification:{number}", urlsafe=urlsafe),
            NUMBERS,
            st.booleans(),
        ),
        st.sampled_from([Real(name) for name in (*REAL_CURSORS, *REAL_NOTIFICATION_CURSORS)]),
    )
)
visibilities = enum_values(["PUBLIC", "PRIVATE"])
event_kinds = enum_values(["STATUS_CHANGE", "COMMENT", "USER_JOINED"])
viewers = st.sampled_from(["alice", "bob", None])


# The world and the checks -----------------------------------------------------------


@dataclass
class World:
    """Two users with tokens and events, and the real ids the strategies point at."""

    tokens: dict[str, str]
    real: dict[str, str]
    users: dict[str, User] = field(default_factory=dict)
    inbox_cursors: dict[str, set[str]] = field(default_factory=dict)  # of each one's own

    def resolve(self, value: Any) -> Any:
        """``value`` with each :class:`Real` replaced and each omitted entry dropped."""
        if isinstance(value, Real):
            return self.real[value.name]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items() if v is not OMIT}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value


@pytest.fixture
def world(make_user: Callable[..., User]) -> World:
    """Alice and Bob, each with public and private events, and their tokens."""
    alice, bob = make_user("alice"), make_user("bob")
    public = event_services.status_change_create(
        actor=alice, status="public", visibility=Visibility.PUBLIC
    )
    private = event_services.status_change_create(
        actor=alice, status="private", visibility=Visibility.PRIVATE
    )
    comment = event_services.comment_create(
        actor=alice, body="on it", target=public, visibility=Visibility.PUBLIC
    )
    bob_private = event_services.status_change_create(
        actor=bob, status="bob's", visibility=Visibility.PRIVATE
    )
    bob_comment = event_services.comment_create(
        actor=bob, body="bob on it", target=public, visibility=Visibility.PRIVATE
    )
    # Notifications: alice a MENTION and a COMMENT, bob a MENTION.
    event_services.status_change_create(actor=bob, status="hi @alice", visibility=Visibility.PUBLIC)
    event_services.comment_create(
        actor=bob, body="@alice look", target=public, visibility=Visibility.PUBLIC
    )
    event_services.status_change_create(
        actor=alice, status="ping @bob", visibility=Visibility.PUBLIC
    )
    inbox = {
        user.username: list(Notification.objects.filter(recipient=user).order_by("-id"))
        for user in (alice, bob)
    }
    assert len(inbox["alice"]) == 2 and len(inbox["bob"]) == 1
    first_activity, last_activity = Activity.objects.first(), Activity.objects.last()
    assert first_activity is not None and last_activity is not None
    return World(
        users={"alice": alice, "bob": bob},
        inbox_cursors={
            name: {encode_notification_cursor(n.pk) for n in notes} for name, notes in inbox.items()
        },
        tokens={"alice": token_issue(user=alice), "bob": token_issue(user=bob)},
        real={
            "user:alice": encode_global_id("User", alice.pk),
            "user:bob": encode_global_id("User", bob.pk),
            "event:alice_public": encode_global_id("StatusChange", public.pk),
            "event:alice_private": encode_global_id("StatusChange", private.pk),
            "event:alice_comment": encode_global_id("Comment", comment.pk),
            "event:bob_private": encode_global_id("StatusChange", bob_private.pk),
            "event:bob_comment": encode_global_id("Comment", bob_comment.pk),
            "swapped:alice_public_as_comment": encode_global_id("Comment", public.pk),
            "swapped:alice_comment_as_status": encode_global_id("StatusChange", comment.pk),
            "swapped:alice_public_as_user": encode_global_id("User", public.pk),
            "connection:first_item": b64("arrayconnection:0"),
            "activity:first": encode_activity_cursor(first_activity.pk),
            "activity:last": encode_activity_cursor(last_activity.pk),
            "notification:alice": encode_global_id("Notification", inbox["alice"][0].pk),
            "notification:bob": encode_global_id("Notification", inbox["bob"][0].pk),
            "notification-cursor:alice": encode_notification_cursor(inbox["alice"][-1].pk),
            "notification-cursor:bob": encode_notification_cursor(inbox["bob"][0].pk),
            "notification-cursor:zero": encode_notification_cursor(0),
        },
    )


@pytest.fixture
def alice_online(world: World) -> Iterator[None]:
    """This process's presence (in memory): alice signed in, bob never seen."""
    with override_settings(REDIS_URL=""):
        reset_presence_tracker()
        presence_tracker()
    user_logged_in.send(sender=User, request=None, user=world.users["alice"])
    yield
    reset_presence_tracker()


SNAPSHOT_MODELS: list[type[models.Model]] = [
    User,
    Profile,
    ApiToken,
    Event,
    StatusChange,
    Comment,
    Activity,
    Notification,
]


def database_snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every model an operation may write, field by field."""
    return {
        model._meta.label: list(
            model._default_manager.order_by("pk").values_list(
                *(field.attname for field in model._meta.concrete_fields)
            )
        )
        for model in SNAPSHOT_MODELS
    }


def send(data: str | bytes, headers: Mapping[str, str] | None = None) -> HttpResponse:
    """POST a JSON body from a fresh client; an exception in the view comes back as a 500."""
    cache.clear()  # login throttling counts would otherwise pile up across examples
    response = Client(raise_request_exception=False).post(
        "/graphql/", data=data, content_type="application/json", headers=dict(headers or {})
    )
    return cast(HttpResponse, response)  # never streaming here


def post(world: World, query: str, variables: Any, viewer: str | None) -> HttpResponse:
    """Send one operation, as ``viewer`` (a name in the world, or anonymous)."""
    headers = {"Authorization": f"Bearer {world.tokens[viewer]}"} if viewer else {}
    payload: dict[str, Any] = {"query": query}
    if variables is not OMIT:
        payload["variables"] = world.resolve(variables)
    return send(json.dumps(payload), headers)


def check_answer(response: HttpResponse, codes: frozenset[str]) -> dict[str, Any]:
    """Assert ``response`` is a well-formed success or coded failure; return its body."""
    assert response.status_code in (200, 400), response.content[:500]
    assert response["Content-Type"].startswith(
        ("application/json", "application/graphql-response+json")
    )
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) <= {"data", "errors", "extensions"}, body
    errors = body.get("errors")
    if errors is None:
        assert response.status_code == 200 and body.get("data") is not None, body
        return body
    assert isinstance(errors, list) and errors, body
    for error in errors:
        message, code = error.get("message"), (error.get("extensions") or {}).get("code")
        assert isinstance(message, str), error
        assert code in codes, error
        assert not leaks(message), error
        fields = error["extensions"].get("fields")
        if fields is not None:
            assert isinstance(fields, dict) and all(
                isinstance(messages, list) and all(isinstance(m, str) for m in messages)
                for messages in fields.values()
            ), error
    if VALIDATION in {error["extensions"]["code"] for error in errors}:
        assert body.get("data") is None, body  # a rejected operation runs no field
    else:
        assert response.status_code == 200, body
    return body


def check_operation(
    world: World,
    query: str,
    variables: Mapping[str, Any],
    viewer: str | None,
    codes: frozenset[str],
    *,
    writes: bool,
) -> dict[str, Any]:
    """Send an operation; the database must be as before if it failed or only reads."""
    before = database_snapshot()
    body = check_answer(post(world, query, variables, viewer), codes)
    if "errors" in body or not writes:
        assert database_snapshot() == before, body.get("errors")
    return body


# A failed mutation leaves the database exactly as it was; a query never writes.
check_mutation = functools.partial(check_operation, writes=True)
check_query = functools.partial(check_operation, writes=False)


# Mutations --------------------------------------------------------------------------


@HOSTILE
@given(
    variables=st.fixed_dictionaries(
        {"input": input_object(username=strings, email=strings, password=strings)}
    ),
    viewer=viewers,
)
@example(  # an unpaired surrogate cannot be hashed: was INTERNAL
    variables={
        "input": {"username": "zoe", "email": "zoe@example.com", "password": "pass\ud800word"}
    },
    viewer=None,
)
@example(  # nor turned into an IDNA domain: was INTERNAL
    variables={
        "input": {"username": "zoe", "email": "zoe@exa\ud800mple.com", "password": PASSWORD}
    },
    viewer=None,
)
@example(variables={"input": {"username": None, "email": 5, "password": []}}, viewer=None)
def test_create_user(world: World, variables: dict[str, Any], viewer: str | None) -> None:
    check_mutation(world, CREATE_USER, variables, viewer, CREATE_CODES)


@HOSTILE
@given(
    username=mostly(
        st.one_of(hostile_text, st.sampled_from(["alice", "bob", "ALICE", "alice\x00"]))
    ),
    password=mostly(st.one_of(hostile_text, st.just(PASSWORD))),
    viewer=viewers,
)
@example(username="alice", password="\ud800", viewer=None)  # was INTERNAL
@example(username="\udfff", password=PASSWORD, viewer=None)  # was INTERNAL
@example(username="alice\x00", password=PASSWORD, viewer=None)  # INTERNAL on PostgreSQL
def test_login(world: World, username: Any, password: Any, viewer: str | None) -> None:
    variables = {"username": username, "password": password}
    check_mutation(world, LOGIN, variables, viewer, LOGIN_CODES)


@HOSTILE
@given(
    variables=st.fixed_dictionaries(
        {"input": input_object(website=optional_strings, bio=optional_strings)}
    ),
    viewer=viewers,
)
@example(variables={"input": {"bio": "\ud800"}}, viewer="alice")  # was INTERNAL
@example(variables={"input": {"website": "https://a\ud800.example"}}, viewer="alice")
def test_update_profile(world: World, variables: dict[str, Any], viewer: str | None) -> None:
    check_mutation(world, UPDATE_PROFILE, variables, viewer, CREATE_CODES)


@HOSTILE
@given(
    variables=st.fixed_dictionaries(
        {"input": input_object(status=strings, visibility=visibilities)}
    ),
    viewer=viewers,
)
@example(variables={"input": {"status": "\ud800"}}, viewer="alice")  # was INTERNAL
@example(variables={"input": {"status": "ok", "visibility": "SECRET"}}, viewer="alice")
@example(variables={"input": {"status": "ok", "bogus": 1}}, viewer="alice")
def test_create_status_change(world: World, variables: dict[str, Any], viewer: str | None) -> None:
    check_mutation(world, CREATE_STATUS_CHANGE, variables, viewer, CREATE_CODES)


@HOSTILE
@given(variables=st.fixed_dictionaries({"id": ids, "status": strings}), viewer=viewers)
@example(variables={"id": None, "status": "x"}, viewer="alice")  # was INTERNAL
@example(variables={"id": [1], "status": {"a": 1}}, viewer="alice")  # was INTERNAL
@example(variables={"id": Real("event:alice_public"), "status": "\ud800"}, viewer="alice")
def test_update_status_change(world: World, variables: dict[str, Any], viewer: str | None) -> None:
    check_mutation(world, UPDATE_STATUS_CHANGE, variables, viewer, CHANGE_CODES)


@HOSTILE
@given(
    variables=st.fixed_dictionaries(
        {"input": input_object(body=strings, targetId=ids, visibility=visibilities)}
    ),
    viewer=viewers,
)
@example(variables={"input": {"body": "\ud800"}}, viewer="bob")  # was INTERNAL
@example(variables={"input": {"body": "x", "targetId": 1.5}}, viewer="bob")  # was INTERNAL
def test_create_comment(world: World, variables: dict[str, Any], viewer: str | None) -> None:
    check_mutation(world, CREATE_COMMENT, variables, viewer, CHANGE_CODES)


@HOSTILE
@given(variables=st.fixed_dictionaries({"id": ids, "body": strings}), viewer=viewers)
@example(variables={"id": Real("event:alice_comment"), "body": "\udbff"}, viewer="alice")
def test_update_comment(world: World, variables: dict[str, Any], viewer: str | None) -> None:
    check_mutation(world, UPDATE_COMMENT, variables, viewer, CHANGE_CODES)


@HOSTILE
@given(variables=st.fixed_dictionaries({"id": ids}), viewer=viewers)
@example(variables={"id": {"id": 1}}, viewer="alice")  # was INTERNAL
def test_delete_event(world: World, variables: dict[str, Any], viewer: str | None) -> None:
    check_mutation(world, DELETE_EVENT, variables, viewer, CHANGE_CODES - {"BAD_USER_INPUT"})


def others_notifications(viewer: str | None) -> list[tuple[Any, ...]]:
    """Every notification that is not ``viewer``'s, field by field."""
    rows = Notification.objects.order_by("pk")
    if viewer is not None:
        rows = rows.exclude(recipient__username=viewer)
    return list(rows.values_list("pk", "recipient_id", "kind", "activity_id", "event_pk", "read"))


@HOSTILE
@given(
    variables=st.fixed_dictionaries({"ids": notification_ids, "upTo": notification_cursors}),
    viewer=viewers,
)
@example(variables={"ids": ["\ud800"]}, viewer="alice")
@example(variables={"ids": [None]}, viewer="alice")
@example(variables={"ids": [1.5, {"id": 1}, []]}, viewer="alice")
@example(variables={"ids": Real("notification:bob")}, viewer="alice")
@example(variables={"ids": [b64("Notification:" + "9" * 18)]}, viewer="alice")
@example(variables={"ids": [b64("Notification:-1")]}, viewer="alice")
@example(variables={"ids": [b64("Notification:\ud800")]}, viewer="alice")
@example(variables={"upTo": "\ud800"}, viewer="alice")
@example(variables={"upTo": b64("notification:" + "9" * 18, urlsafe=True)}, viewer="alice")
@example(variables={"upTo": b64("notification:" + "9" * 30, urlsafe=True)}, viewer="alice")
@example(variables={"upTo": b64("notification:-1", urlsafe=True)}, viewer="alice")
@example(variables={"upTo": Real("notification-cursor:bob")}, viewer="alice")
@example(variables={"ids": [], "upTo": None}, viewer="bob")
def test_mark_notifications_read(
    world: World, variables: dict[str, Any], viewer: str | None
) -> None:
    """Whatever it is sent, it answers a count or a coded error, and marks nothing of
    anyone but the caller."""
    others = others_notifications(viewer)
    body = check_mutation(world, MARK_NOTIFICATIONS_READ, variables, viewer, MARK_READ_CODES)
    assert others_notifications(viewer) == others
    if "errors" not in body:
        assert isinstance(body["data"]["markNotificationsRead"], int)


@pytest.mark.parametrize("text", ["a\x00b", "\x00", "a\ud800b", "\udfff"])
@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (CREATE_USER, {"input": {"username": "zoe", "email": "zoe@example.com", "password": "{}"}}),
        (LOGIN, {"username": "{}", "password": PASSWORD}),
        (UPDATE_PROFILE, {"input": {"bio": "{}"}}),
        (CREATE_STATUS_CHANGE, {"input": {"status": "{}"}}),
        (CREATE_COMMENT, {"input": {"body": "{}"}}),
    ],
)
def test_text_no_database_can_store_is_refused_before_anything_runs(
    world: World, query: str, variables: dict[str, Any], text: str
) -> None:
    """NUL (PostgreSQL text cannot hold it) and unpaired surrogates (not UTF-8) in a String."""
    filled = json.loads(json.dumps(variables).replace("{}", json.dumps(text)[1:-1]))
    body = check_mutation(world, query, filled, "alice", frozenset({VALIDATION}))
    assert body["data"] is None
    assert [error["extensions"]["code"] for error in body["errors"]] == [VALIDATION]


# Queries ----------------------------------------------------------------------------


@HOSTILE
@given(query=st.sampled_from([USER, EVENT]), variables=st.fixed_dictionaries({"id": ids}))
@example(query=USER, variables={"id": 1.5})  # was INTERNAL
@example(query=EVENT, variables={"id": None})  # was INTERNAL
def test_node_by_id(world: World, query: str, variables: dict[str, Any]) -> None:
    check_query(world, query, variables, "alice", NODE_CODES)


@HOSTILE
@given(
    variables=st.fixed_dictionaries(
        {"first": page_sizes, "after": cursors, "last": page_sizes, "before": cursors}
    ),
    viewer=viewers,
)
@example(variables={"first": 2**31}, viewer=None)  # was INTERNAL
@example(variables={"after": "abc"}, viewer=None)  # bad padding: was INTERNAL
@example(variables={"after": b64("arrayconnection:abc")}, viewer=None)  # was INTERNAL
@example(variables={"after": b64("arrayconnection:" + "9" * 30)}, viewer=None)  # was INTERNAL
@example(variables={"after": b64("arrayconnection:-5")}, viewer=None)  # was INTERNAL
@example(variables={"before": b64("arrayconnection:-5"), "last": 1}, viewer=None)
@example(variables={"after": "\ud800"}, viewer=None)  # was INTERNAL
def test_users_connection(world: World, variables: dict[str, Any], viewer: str | None) -> None:
    check_query(world, USERS, variables, viewer, QUERY_CODES)


@HOSTILE
@given(
    variables=st.fixed_dictionaries(
        {
            "first": page_sizes,
            "after": cursors,
            "last": page_sizes,
            "before": cursors,
            "kind": event_kinds,
            "actorId": ids,
        }
    ),
    viewer=viewers,
)
@example(variables={"kind": "NOPE"}, viewer="alice")  # was INTERNAL
@example(variables={"kind": 3, "actorId": [1]}, viewer="alice")  # was INTERNAL
@example(variables={"after": b64("arrayconnection:" + "9" * 30)}, viewer="alice")
def test_events_connection(world: World, variables: dict[str, Any], viewer: str | None) -> None:
    check_query(world, EVENTS, variables, viewer, QUERY_CODES)


@HOSTILE
@given(variables=st.fixed_dictionaries({"after": cursors, "first": page_sizes}), viewer=viewers)
@example(variables={"after": "x", "first": 2**63}, viewer=None)  # was INTERNAL
@example(variables={"after": b64("activity:" + "9" * 30)}, viewer=None)
def test_activities(world: World, variables: dict[str, Any], viewer: str | None) -> None:
    check_query(world, ACTIVITIES, variables, viewer, QUERY_CODES)


@HOSTILE
@given(
    variables=st.fixed_dictionaries(
        {
            "first": page_sizes,
            "after": notification_cursors,
            "last": page_sizes,
            "before": notification_cursors,
            "unreadOnly": flags,
        }
    ),
    viewer=viewers,
)
@example(variables={"first": 2**31}, viewer="alice")
@example(variables={"first": 101, "unreadOnly": True}, viewer="alice")
@example(variables={"unreadOnly": "true"}, viewer="alice")
@example(variables={"unreadOnly": None}, viewer="bob")
@example(variables={"after": Real("notification-cursor:alice")}, viewer="alice")
@example(variables={"after": b64("arrayconnection:" + "9" * 30)}, viewer="alice")
@example(variables={"after": b64("arrayconnection:" + "9" * 18)}, viewer="alice")
@example(variables={"before": b64("arrayconnection:0"), "last": 2**31 - 1}, viewer="alice")
@example(variables={"first": 0, "last": 0}, viewer="bob")
@example(variables={"after": "\ud800"}, viewer=None)
def test_notifications_connection(
    world: World, variables: dict[str, Any], viewer: str | None
) -> None:
    body = check_query(world, NOTIFICATIONS, variables, viewer, INBOX_CODES)
    if "errors" not in body:
        cursors = {e["node"]["cursor"] for e in body["data"]["notifications"]["edges"]}
        assert viewer is not None and cursors <= world.inbox_cursors[viewer]


def as_graphql_int(value: Any) -> int | None:
    """The ``Int`` GraphQL reads a JSON variable as (``None``: it cannot read one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if -(2**31) <= value <= 2**31 - 1 else None


@HOSTILE
@given(first=page_sizes, viewer=viewers)
@example(first=OMIT, viewer="bob")
@example(first=None, viewer="bob")
@example(first=0, viewer="alice")
@example(first=100, viewer="alice")
@example(first=101, viewer="alice")
@example(first=-1, viewer="bob")
@example(first=2**31 - 1, viewer="alice")
@example(first=2**31, viewer="alice")
@example(first=1.0, viewer="alice")
@example(first=1.5, viewer="alice")
@example(first=float("nan"), viewer="alice")
@example(first="1", viewer="alice")
@example(first=101, viewer=None)
@example(first="x", viewer=None)
def test_online_users(world: World, alice_online: None, first: Any, viewer: str | None) -> None:
    """Exactly one outcome for each ``first``: unreadable, anonymous, out of range, or
    the users online (alice), most recently seen first."""
    body = check_query(world, ONLINE_USERS, {"first": first}, viewer, INBOX_CODES)
    codes = [error["extensions"]["code"] for error in body.get("errors", [])]
    size = 50 if first is OMIT or first is None else as_graphql_int(first)
    if size is None:
        assert codes == [VALIDATION], body
    elif viewer is None:
        assert codes == ["UNAUTHENTICATED"], body
    elif not 0 <= size <= 100:
        assert codes == ["BAD_USER_INPUT"], body
        assert list(body["errors"][0]["extensions"]["fields"]) == ["first"], body
    else:
        listed = body["data"]["onlineUsers"]
        expected = [(world.real["user:alice"], "alice", True)][:size]
        assert [(u["id"], u["username"], u["online"]) for u in listed] == expected, body
        assert all(isinstance(u["lastSeenAt"], str) for u in listed), body


# Subscriptions ----------------------------------------------------------------------


def unstorable(value: Any) -> bool:
    """Whether a string anywhere in ``value`` (keys too) holds NUL or an unpaired
    surrogate: variables no database can store, refused before anything runs."""
    if isinstance(value, str):
        return any(char == "\x00" or "\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(unstorable(key) or unstorable(item) for key, item in value.items())
    if isinstance(value, list):
        return any(unstorable(item) for item in value)
    return False


def sent_errors(sink: RecordingSink) -> list[Mapping[str, Any]]:
    """Every error the engine sent: in a result, a rejection, a failure or a payload."""
    errors: list[Mapping[str, Any]] = [
        error.formatted
        for result in (*sink.results, *sink.rejected)
        for error in result.errors or []
    ]
    errors += [error for failed in sink.errors for error in failed]
    errors += [error for payload in sink.payloads for error in payload.get("errors") or []]
    return errors


def sent_codes(sink: RecordingSink) -> list[Any]:
    return [(error.get("extensions") or {}).get("code") for error in sent_errors(sink)]


def check_notification_update(world: World, viewer: str | None, update: Any) -> None:
    """Only the viewer's own notifications stream."""
    assert isinstance(update["unreadCount"], int)
    if update["notification"] is not None:
        assert viewer is not None
        assert update["notification"]["cursor"] in world.inbox_cursors[viewer]


def check_presence_item(world: World, viewer: str | None, item: Any) -> None:
    """A transition of a user of the world, streamed to a signed-in viewer."""
    assert viewer is not None
    assert item["user"]["id"] in {world.real["user:alice"], world.real["user:bob"]}
    assert isinstance(item["online"], bool) and isinstance(item["lastSeenAt"], str)


# What each subscription streams, checked item by item (keyed by its root field).
STREAMED: dict[str, Callable[[World, str | None, Any], None]] = {
    "notifications": check_notification_update,
    "presence": check_presence_item,
}


async def until_payloads(sink: RecordingSink, count: int, timeout: float = 10) -> None:
    """Wait until ``sink`` holds ``count`` payloads (the caller asserts what they are)."""
    deadline = time.monotonic() + timeout
    while len(sink.payloads) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


async def check_subscription(
    world: World,
    query: str,
    variables: Any,
    viewer: str | None,
    while_open: Callable[[RecordingSink], Awaitable[None]] | None = None,
) -> RecordingSink:
    """Open one subscription on the live engine (and run ``while_open`` while it is
    open); everything it sends (a result, a rejection, a failure, streamed payloads)
    is data or errors with a contract code, and only what the viewer may see streams."""
    engine = get_engine(schema)
    sink = RecordingSink()
    user = world.users[viewer] if viewer is not None else None
    resolved = None if variables is OMIT else world.resolve(variables)
    subscriber = await subscribe(engine, sink, query, resolved, user)
    try:
        if subscriber is not None and while_open is not None:
            await while_open(sink)
        errors = sent_errors(sink)
        for error in errors:
            message, code = error.get("message"), (error.get("extensions") or {}).get("code")
            assert isinstance(message, str) and not leaks(message), error
            assert code in LIVE_CODES, error
        assert not sink.aborted
        if subscriber is None:
            # Refused (it did not validate), or answered with errors and completed.
            assert errors and (sink.rejected or sink.completed), sink.results
        else:
            assert viewer is not None
        for payload in sink.payloads:
            ((name, item),) = payload["data"].items()
            STREAMED[name](world, viewer, item)
    finally:
        if subscriber is not None:
            engine.end(subscriber)
    return sink


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_worker_connections")
@HOSTILE
@given(  # variables are an object or none: the adapters refuse anything else before the engine
    variables=st.one_of(st.fixed_dictionaries({"after": notification_cursors}), st.just(OMIT)),
    viewer=viewers,
)
@example(variables={"after": "\ud800"}, viewer="alice")
@example(variables={"after": b64("notification:" + "9" * 30, urlsafe=True)}, viewer="alice")
@example(variables={"after": b64("notification:" + "9" * 18, urlsafe=True)}, viewer="alice")
@example(variables={"after": b64("notification:-1", urlsafe=True)}, viewer="alice")
@example(variables={"after": Real("notification-cursor:zero")}, viewer="alice")
@example(variables={"after": Real("notification-cursor:bob")}, viewer="alice")
@example(variables={"after": Real("activity:first")}, viewer="bob")
@example(variables={"after": 5}, viewer="bob")
@example(variables={"after": ["x"]}, viewer="bob")
@example(variables={"after": Real("notification-cursor:zero")}, viewer=None)
async def test_notifications_subscription(world: World, variables: Any, viewer: str | None) -> None:
    await check_subscription(world, LIVE_NOTIFICATIONS, variables, viewer)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_worker_connections", "alice_online")
@HOSTILE
@given(
    query=st.sampled_from([LIVE_PRESENCE, LIVE_PRESENCE, *LIVE_PRESENCE_WITH_ARGUMENTS]),
    variables=st.one_of(  # an object or none, as for ``notifications``
        st.fixed_dictionaries({"after": notification_cursors, "first": page_sizes}),
        st.dictionaries(st.text(max_size=8).filter(lambda key: not leaks(key)), any_json),
        st.just(OMIT),
    ),
    viewer=viewers,
)
@example(query=LIVE_PRESENCE, variables=OMIT, viewer="alice")
@example(query=LIVE_PRESENCE, variables=OMIT, viewer=None)
@example(query=LIVE_PRESENCE, variables={"after": None, "first": 2**31}, viewer="bob")
@example(query=LIVE_PRESENCE, variables={"after": "\ud800"}, viewer="bob")  # refused
@example(query=LIVE_PRESENCE, variables={"x\x00": [{"y": "z"}]}, viewer="alice")  # refused
@example(query=LIVE_PRESENCE_WITH_ARGUMENTS[0], variables={"after": None}, viewer="alice")
@example(
    query=LIVE_PRESENCE_WITH_ARGUMENTS[0],
    variables={"after": Real("notification-cursor:zero")},
    viewer=None,
)
@example(query=LIVE_PRESENCE_WITH_ARGUMENTS[1], variables={"first": 1}, viewer="bob")
async def test_presence_subscription(
    world: World, query: str, variables: Any, viewer: str | None
) -> None:
    """``presence`` takes no argument: given one it is refused; else anonymous is
    ``UNAUTHENTICATED`` and a signed-in viewer streams the next transition (bob signing
    in or out), whatever variables come along."""
    tracker, bob = presence_tracker(), world.users["bob"]
    sent: list[bool] = []  # bob's transitions, while subscribed

    async def bob_signs_in_or_out(sink: RecordingSink) -> None:
        online = not tracker.states([bob.pk])[bob.pk].online
        (tracker.logged_in if online else tracker.logged_out)(bob.pk)  # never blocks
        sent.append(online)
        await until_payloads(sink, 1)

    sink = await check_subscription(world, query, variables, viewer, bob_signs_in_or_out)
    if query != LIVE_PRESENCE or unstorable(variables):
        assert sink.rejected and set(sent_codes(sink)) == {VALIDATION}, sink.rejected
    elif viewer is None:
        assert sink.completed and sent_codes(sink) == ["UNAUTHENTICATED"], sink.results
    else:
        assert sent_codes(sink) == [] and sink.results == []
        bob_id = world.real["user:bob"]
        streamed = [
            (item["online"], item["user"]["id"], item["user"]["online"])
            for item in (payload["data"]["presence"] for payload in sink.payloads)
        ]
        assert streamed == [(online, bob_id, online) for online in sent]


# Credentials ------------------------------------------------------------------------


@HOSTILE
@given(
    header=st.one_of(
        st.builds(lambda token: f"Bearer {token}", st.text(st.characters(max_codepoint=0xFF))),
        st.builds(
            lambda token: f"Bearer pulse_{token}", st.text(st.characters(max_codepoint=0xFF))
        ),
        st.text(st.characters(max_codepoint=0xFF), max_size=200),
    )
)
def test_authorization_header(header: str) -> None:
    """A forged or garbled header (HTTP header text is Latin-1) is anonymous or refused."""
    response = send(json.dumps({"query": "{ me { id } }"}), {"Authorization": header})
    if response.status_code == 401:
        body = json.loads(response.content)
        assert [error["extensions"]["code"] for error in body["errors"]] == ["UNAUTHENTICATED"]
    else:
        body = check_answer(response, frozenset())
        assert body["data"] == {"me": None}


# Request bodies ---------------------------------------------------------------------


def nested(depth: int) -> bytes:
    """A request whose one variable is a list nested ``depth`` deep."""
    value = "[" * depth + "]" * depth
    return f'{{"query": {json.dumps(USER)}, "variables": {{"id": {value}}}}}'.encode()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"query": "{ me { id } }"', id="truncated-json"),
        pytest.param(b"[1, 2]", id="batch"),
        pytest.param(json.dumps({"query": USER, "variables": [1]}).encode(), id="variables-list"),
        pytest.param(json.dumps({"query": 5}).encode(), id="query-number"),
        pytest.param(b"{}", id="no-query"),
        pytest.param(
            json.dumps({"query": USER, "variables": {"id": "1"}, "operationName": 5}).encode(),
            id="operation-name-number",
        ),
        pytest.param(nested(500), id="variable-nested-500-deep"),
        pytest.param(b'{"query": "{ me { id } }", "x": "\xff\xfe"}', id="invalid-utf8"),
        pytest.param(b'"a string"', id="json-string"),
        pytest.param(b"null", id="json-null"),
        pytest.param(
            json.dumps(
                {"query": USER, "variables": {"id": "1"}, "operationName": "\ud800"}
            ).encode(),
            id="operation-name-surrogate",
        ),
        pytest.param(nested(5000), id="variable-nested-5000-deep"),
    ],
)
def test_malformed_request_body(raw: bytes) -> None:
    """A body the endpoint cannot run is a client error (or a coded one), never a 500."""
    response = send(raw)
    assert response.status_code in (200, 400), response.content[:300]
    if response.status_code == 200:
        body = check_answer(response, frozenset({VALIDATION}))
        assert "errors" in body
