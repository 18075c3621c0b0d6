"""Authorization of the ``activity`` subscription, replay and live, on a real daphne.

Five viewers (anonymous, another user, the author, a staff user and a superuser; the
last two hold the flags and own nothing) each hold two subscriptions: one live only,
opened before the author's first round of writes, and one opened after that round
with ``after`` set to before it, so that it replays the round from the log and then
goes live. The author then writes a second round. Each round creates public and
private status changes and comments (a public comment on the private status), and
updates and deletes a private status and, as a control, a public one.

Every viewer but the author must receive exactly the public activities of both rounds,
in log order, and never a private one's ``CREATED``/``UPDATED``/``DELETED``, a private
text or id, a private comment target, or anyone's e-mail address; the author receives
every activity, in log order, with its own address. Both WebSocket subprotocols run,
each against the in-process channel layer and against redis-server.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.clients import (
    LEGACY_WS,
    TRANSPORT_WS,
    WSClient,
    ahttp_gql,
    sign_up,
    subscriptions_active,
    until_subscribed,
)
from tests.e2e.servers import ROOT, DaphneServer
from tests.helpers import strings_in

pytestmark = pytest.mark.e2e

ANONYMOUS, OTHER, AUTHOR, STAFF, SUPERUSER = "anonymous", "other", "author", "staff", "superuser"
VIEWERS = (ANONYMOUS, OTHER, AUTHOR, STAFF, SUPERUSER)
SIGNED_IN = (OTHER, AUTHOR, STAFF, SUPERUSER)

ACTIVITY = """
subscription($after: String) {
  activity(after: $after) {
    cursor kind verb message eventId
    actor { username email }
    event {
      __typename id visibility actor { username email }
      ... on StatusChange { status }
      ... on Comment { body target { id actor { username email } ... on StatusChange { status } } }
    }
  }
}"""
CREATE_STATUS = """
mutation($s: String!, $v: Visibility) {
  createStatusChange(input: {status: $s, visibility: $v}) { id }
}"""
UPDATE_STATUS = "mutation($id: ID!, $s: String!) { updateStatusChange(id: $id, status: $s) { id } }"
CREATE_COMMENT = """
mutation($b: String!, $t: ID, $v: Visibility) {
  createComment(input: {body: $b, targetId: $t, visibility: $v}) { id }
}"""
DELETE_EVENT = "mutation($id: ID!) { deleteEvent(id: $id) }"
LAST_CURSOR = "{ activities(first: 100) { cursor } }"

casts = (f"s{n}_" for n in itertools.count())


@dataclass
class Cast:
    """The signed-up users of one server, by role."""

    names: dict[str, str]
    tokens: dict[str, str]

    def email(self, role: str) -> str:
        return f"{self.names[role]}@example.com"


@dataclass(frozen=True)
class Sent:
    """One activity the author's writes publish: what every viewer may compare."""

    kind: str
    verb: str
    message: str
    event_id: str
    private: bool


@pytest.fixture(scope="module")
def cast(daphne: DaphneServer) -> Iterator[Cast]:
    """Sign up the four users, then make ``staff`` staff and ``superuser`` a superuser."""
    prefix = next(casts)
    names = {role: f"{prefix}{role}" for role in SIGNED_IN}
    tokens = {role: sign_up(daphne.base, name) for role, name in names.items()}
    promote = (
        "from django.contrib.auth.models import User\n"
        f"User.objects.filter(username={names[STAFF]!r}).update(is_staff=True)\n"
        f"User.objects.filter(username={names[SUPERUSER]!r})"
        ".update(is_staff=True, is_superuser=True)\n"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", promote],
        cwd=ROOT,
        env=daphne.env,
        check=True,
    )
    yield Cast(names=names, tokens=tokens)


async def author_writes(base: str, cast: Cast, label: str) -> list[Sent]:
    """One round of the author's writes; the activities it publishes, in order."""
    token, name = cast.tokens[AUTHOR], cast.names[AUTHOR]

    async def call(document: str, variables: dict[str, Any], field: str) -> Any:
        body = await ahttp_gql(base, document, variables, token)
        assert "errors" not in body, body
        return body["data"][field]

    async def status(text: str, visibility: str) -> str:
        created = await call(CREATE_STATUS, {"s": text, "v": visibility}, "createStatusChange")
        return str(created["id"])

    async def comment(text: str, target: str, visibility: str) -> str:
        variables = {"b": text, "t": target, "v": visibility}
        return str((await call(CREATE_COMMENT, variables, "createComment"))["id"])

    def said(kind: str, verb: str, message: str, event_id: str, private: bool) -> Sent:
        return Sent(kind, verb, f"{name} {message}", event_id, private)

    sc, cm = "STATUS_CHANGE", "COMMENT"
    sent: list[Sent] = []
    public = await status(f"{label} open status", "PUBLIC")
    sent.append(said(sc, "CREATED", f"changed status to '{label} open status'", public, False))
    secret = await status(f"{label} SECRET-STATUS", "PRIVATE")
    sent.append(said(sc, "CREATED", f"changed status to '{label} SECRET-STATUS'", secret, True))
    # A public comment on the private status: its target must stay hidden from others.
    on_secret = await comment(f"{label} open comment", secret, "PUBLIC")
    sent.append(said(cm, "CREATED", f"commented '{label} open comment'", on_secret, False))
    hidden = await comment(f"{label} SECRET-COMMENT", public, "PRIVATE")
    sent.append(said(cm, "CREATED", f"commented '{label} SECRET-COMMENT'", hidden, True))
    # A private status updated then deleted, and a public one likewise (the control).
    for visibility, text in (("PRIVATE", "SECRET-DOOMED"), ("PUBLIC", "open doomed")):
        private = visibility == "PRIVATE"
        doomed = await status(f"{label} {text}", visibility)
        sent.append(said(sc, "CREATED", f"changed status to '{label} {text}'", doomed, private))
        await call(UPDATE_STATUS, {"id": doomed, "s": f"{label} {text} v2"}, "updateStatusChange")
        sent.append(said(sc, "UPDATED", f"edited status to '{label} {text} v2'", doomed, private))
        await call(DELETE_EVENT, {"id": doomed}, "deleteEvent")
        sent.append(said(sc, "DELETED", "deleted a status", doomed, private))
    return sent


def assert_no_leak(
    received: list[dict[str, Any]], viewer: str, cast: Cast, private_ids: set[str]
) -> None:
    """Nothing private of the author, and no address but the viewer's own."""
    found = list(strings_in(received))
    fragments = [cast.email(role) for role in SIGNED_IN if role != viewer]
    if viewer != AUTHOR:
        fragments.append("SECRET-")
        leaked_ids = private_ids & set(found)
        assert not leaked_ids, f"private event ids reached {viewer}: {leaked_ids}"
    for fragment in fragments:
        leaked = [text for text in found if fragment in text]
        assert not leaked, f"{fragment!r} reached {viewer}: {leaked}"


def assert_received(
    received: list[dict[str, Any]], expected: list[Sent], viewer: str, cast: Cast
) -> None:
    """``received`` is ``expected`` in order, each rendered as ``viewer`` may see it."""
    assert [(a["kind"], a["verb"], a["message"], a["eventId"]) for a in received] == [
        (s.kind, s.verb, s.message, s.event_id) for s in expected
    ], viewer
    cursors = [a["cursor"] for a in received]
    assert len(set(cursors)) == len(cursors), "a duplicate delivery"
    own_email = cast.email(AUTHOR) if viewer == AUTHOR else None
    for activity in received:
        assert activity["actor"] == {"username": cast.names[AUTHOR], "email": own_email}
        event = activity["event"]
        if event is None:
            continue  # deleted by the time it was read (always so for DELETED)
        assert event["id"] == activity["eventId"]
        assert event["actor"]["email"] == own_email
        if event["__typename"] == "Comment" and event["visibility"] == "PUBLIC":
            target = event["target"]  # the author's private status
            if viewer == AUTHOR:
                assert target is not None
                assert "SECRET-STATUS" in target["status"]
                assert target["actor"]["email"] == own_email
            else:
                assert target is None


def visible_to(viewer: str, sent: list[Sent]) -> list[Sent]:
    return sent if viewer == AUTHOR else [s for s in sent if not s.private]


async def collect(client: WSClient, count: int, then_quiet: float = 0) -> list[dict[str, Any]]:
    """The next ``count`` activities, and any more arriving until ``then_quiet`` seconds
    pass without one (so that an extra or duplicate delivery shows in the result)."""
    activities = [(await client.next_data())["activity"] for _ in range(count)]
    while then_quiet:
        try:
            activities.append((await client.next_data(then_quiet))["activity"])
        except TimeoutError:
            break
    return activities


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_each_viewer_gets_only_what_it_may_see(
    server: str, cast: Cast, protocol: str
) -> None:
    history = (await ahttp_gql(server, LAST_CURSOR))["data"]["activities"]
    start = history[-1]["cursor"]  # before the author's first write of this test
    streams = [(mode, viewer) for mode in ("live", "replay") for viewer in VIEWERS]
    sockets = {
        stream: await WSClient.open(server, protocol, cast.tokens.get(stream[1]))
        for stream in streams
    }
    active = await subscriptions_active(server)
    for viewer in VIEWERS:  # live only, from before the first round
        await sockets[("live", viewer)].subscribe("live", ACTIVITY)
    await until_subscribed(server, active + len(VIEWERS))
    before = await author_writes(server, cast, "before")
    received = {
        ("live", viewer): await collect(sockets[("live", viewer)], len(visible_to(viewer, before)))
        for viewer in VIEWERS
    }
    for viewer in VIEWERS:  # replay from the start, then live
        await sockets[("replay", viewer)].subscribe("replay", ACTIVITY, {"after": start})
        received[("replay", viewer)] = await collect(
            sockets[("replay", viewer)], len(visible_to(viewer, before))
        )
    during = await author_writes(server, cast, "during")
    # Read what each socket is due, then on until it is quiet: no private activity may
    # follow the public ones, and no duplicate.
    rest = await asyncio.gather(
        *(
            collect(sockets[stream], len(visible_to(stream[1], during)), then_quiet=0.5)
            for stream in streams
        )
    )
    for stream, activities in zip(streams, rest, strict=True):
        received[stream] += activities

    private_ids = {s.event_id for s in [*before, *during] if s.private}
    for stream, activities in received.items():
        viewer = stream[1]
        assert_received(activities, visible_to(viewer, before + during), viewer, cast)
        assert_no_leak(activities, viewer, cast, private_ids)
    # The author's order is the log's order.
    log = await ahttp_gql(
        server,
        "query($a: String) { activities(after: $a, first: 100) { cursor } }",
        {"a": start},
        cast.tokens[AUTHOR],
    )
    log_cursors = [a["cursor"] for a in log["data"]["activities"]]
    assert [a["cursor"] for a in received[("replay", AUTHOR)]] == log_cursors
    assert [a["cursor"] for a in received[("live", AUTHOR)]] == log_cursors
    for client in sockets.values():
        await client.close()
