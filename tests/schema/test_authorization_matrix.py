"""Authorization matrix: every query and mutation, as every kind of viewer.

Each row of ``QUERIES`` and ``MUTATIONS`` is one operation with the outcome expected
for an anonymous caller, for a signed-in stranger (another user, a staff user and a
superuser: none of them owns anything here, so all three must get exactly what another
user gets) and for the owner of the events (the author). Every answer is also scanned
as a whole: private texts, private event ids, other users' e-mail addresses and the
ids and cursors of other users' notifications must never appear in it, wherever a
``User``, an ``Event`` or a ``Notification`` is nested.

Notifications (``NOTIFIED``): the setup's events notify the author (a COMMENT, read, and
a MENTION), ``other`` (two MENTIONs), the superuser (one) and the bystander (one), and
nobody for a PRIVATE event, whoever it mentions; staff get none. The inbox rows give
every signed-in viewer exactly their own, whatever their flags; the
``markNotificationsRead`` rows also check, for every viewer, which notifications of
anyone's are left unread.

Presence (``SIGNED_IN``, ``SIGNED_OUT``): the setup signs ``other``, the author and the bystander in, in
that order, and ``other`` out again; staff and the superuser are never seen. Every
``User`` of every row is selected with ``online`` and ``lastSeenAt``: anonymous viewers
get ``false`` and ``null`` for everyone, signed-in viewers (staff included, all alike)
the real state. ``onlineUsers`` and the ``presence`` subscription are ``UNAUTHENTICATED``
when anonymous, and give every signed-in viewer the same users.

Sign-up and sign-in (decided here, see the ``createUser``/``login`` rows):

- ``login`` with a wrong password for an existing user and with an unknown username
  answer the very same error (code and message).
- ``createUser`` with a taken username is ``BAD_USER_INPUT`` on ``username`` ("already
  exists"). Usernames are public (``users`` lists them all), so this reveals nothing
  new. E-mail addresses are private: an address already used by someone else is
  treated exactly like a fresh one (accepted when all else is valid, and the errors
  for other bad fields are identical), so sign-up never reveals who registered it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.core.cache import cache
from django.db import connection
from django.test import Client, override_settings
from strawberry.relay import to_base64
from strawberry.relay.types import PREFIX as CONNECTION_CURSOR_PREFIX

from events.cursors import encode_activity_cursor, encode_notification_cursor
from events.models import Activity, Comment, Event, Notification, StatusChange, Visibility
from schema.ids import encode_global_id
from schema.live.engine import get_engine
from schema.schema import schema
from tests.helpers import PASSWORD, error_codes, gql, strings_in
from tests.schema.live_sinks import RecordingSink, subscribe
from users.models import Profile
from users.presence import PresenceState, presence_tracker, reset_presence_tracker
from users.tokens import token_issue

pytestmark = pytest.mark.django_db

# The cast ---------------------------------------------------------------------------

ANONYMOUS, OTHER, AUTHOR, STAFF, SUPERUSER = "anonymous", "other", "author", "staff", "superuser"
VIEWERS = (ANONYMOUS, OTHER, AUTHOR, STAFF, SUPERUSER)
BYSTANDER = "bystander"  # owns a private event; never a viewer
USER_FLAGS: dict[str, dict[str, bool]] = {
    AUTHOR: {},
    OTHER: {},
    STAFF: {"is_staff": True},
    SUPERUSER: {"is_staff": True, "is_superuser": True},
    BYSTANDER: {},
}
UNKNOWN_PK = 999_999_999


def email_of(username: str) -> str:
    return f"{username}@example.com"


# Private texts carry a marker that no public text contains, so a leak of any part
# of them (a status, a body, an activity message quoting one) is found by substring.
# Private texts mention users too: a PRIVATE event notifies nobody (not even whom it
# mentions), so no notification may carry one of them to anybody.
PUBLIC_STATUS = "author open status for @bystander"
PRIVATE_STATUS = "author SECRET-STATUS v1 for @bystander"
PRIVATE_STATUS_EDITED = "author SECRET-STATUS v2 for @other"
PRIVATE_COMMENT = "author SECRET-COMMENT for @bystander"
# A public comment on a private status: who it mentions is notified, and is shown the
# comment without its target.
PUBLIC_COMMENT = "author open comment for @other"
DELETED_PRIVATE_STATUS = "author SECRET-DELETED for @bystander"
DELETED_PUBLIC_STATUS = "author open, deleted, for @other"
BYSTANDER_STATUS = "bystander SECRET-BYSTANDER for @author and @bystander"
BYSTANDER_COMMENT = "bystander open comment for @other and @superuser"
BYSTANDER_PRIVATE_COMMENT = "bystander SECRET-BYSTANDER-COMMENT for @author and @other"
BYSTANDER_MENTION = "bystander open status for @author"
SECRET_MARKERS = {
    AUTHOR: ("SECRET-STATUS", "SECRET-COMMENT", "SECRET-DELETED"),
    BYSTANDER: ("SECRET-BYSTANDER",),
}


@dataclass(frozen=True)
class EventSpec:
    """One event of the setup, as it stands once the setup is done."""

    type_name: str
    owner: str
    visibility: str
    text: str
    target: str | None = None


EVENTS: dict[str, EventSpec] = {
    "public_status": EventSpec("StatusChange", AUTHOR, "PUBLIC", PUBLIC_STATUS),
    "private_status": EventSpec("StatusChange", AUTHOR, "PRIVATE", PRIVATE_STATUS_EDITED),
    "public_comment": EventSpec(
        "Comment", AUTHOR, "PUBLIC", PUBLIC_COMMENT, target="private_status"
    ),
    "private_comment": EventSpec(
        "Comment", AUTHOR, "PRIVATE", PRIVATE_COMMENT, target="public_status"
    ),
    "bystander_status": EventSpec("StatusChange", BYSTANDER, "PRIVATE", BYSTANDER_STATUS),
    "bystander_comment": EventSpec(
        "Comment", BYSTANDER, "PUBLIC", BYSTANDER_COMMENT, target="public_status"
    ),
    "bystander_private_comment": EventSpec(
        "Comment", BYSTANDER, "PRIVATE", BYSTANDER_PRIVATE_COMMENT, target="public_status"
    ),
    "bystander_mention": EventSpec("StatusChange", BYSTANDER, "PUBLIC", BYSTANDER_MENTION),
}


@dataclass(frozen=True)
class Step:
    """One entry of the activity log the setup writes, in log order."""

    actor: str
    kind: str
    verb: str
    message: str
    event: str | None = None  # key in EVENTS, or of a deleted event
    private: bool = False


HISTORY: tuple[Step, ...] = (
    *(Step(name, "USER_JOINED", "CREATED", f"{name} joined") for name in USER_FLAGS),
    Step(
        AUTHOR,
        "STATUS_CHANGE",
        "CREATED",
        f"author changed status to {PUBLIC_STATUS!r}",
        "public_status",
    ),
    Step(
        AUTHOR,
        "STATUS_CHANGE",
        "CREATED",
        f"author changed status to {PRIVATE_STATUS!r}",
        "private_status",
        private=True,
    ),
    Step(AUTHOR, "COMMENT", "CREATED", f"author commented {PUBLIC_COMMENT!r}", "public_comment"),
    Step(
        AUTHOR,
        "COMMENT",
        "CREATED",
        f"author commented {PRIVATE_COMMENT!r}",
        "private_comment",
        private=True,
    ),
    Step(
        BYSTANDER,
        "STATUS_CHANGE",
        "CREATED",
        f"bystander changed status to {BYSTANDER_STATUS!r}",
        "bystander_status",
        private=True,
    ),
    Step(
        BYSTANDER,
        "COMMENT",
        "CREATED",
        f"bystander commented {BYSTANDER_COMMENT!r}",
        "bystander_comment",
    ),
    Step(
        BYSTANDER,
        "COMMENT",
        "CREATED",
        f"bystander commented {BYSTANDER_PRIVATE_COMMENT!r}",
        "bystander_private_comment",
        private=True,
    ),
    Step(
        BYSTANDER,
        "STATUS_CHANGE",
        "CREATED",
        f"bystander changed status to {BYSTANDER_MENTION!r}",
        "bystander_mention",
    ),
    Step(
        AUTHOR,
        "STATUS_CHANGE",
        "UPDATED",
        f"author edited status to {PRIVATE_STATUS_EDITED!r}",
        "private_status",
        private=True,
    ),
    Step(
        AUTHOR,
        "STATUS_CHANGE",
        "CREATED",
        f"author changed status to {DELETED_PRIVATE_STATUS!r}",
        "deleted_private",
        private=True,
    ),
    Step(AUTHOR, "STATUS_CHANGE", "DELETED", "author deleted a status", "deleted_private", True),
    Step(
        AUTHOR,
        "STATUS_CHANGE",
        "CREATED",
        f"author changed status to {DELETED_PUBLIC_STATUS!r}",
        "deleted_public",
    ),
    Step(AUTHOR, "STATUS_CHANGE", "DELETED", "author deleted a status", "deleted_public"),
)


@dataclass(frozen=True)
class Note:
    """One notification the setup leaves, in the order they are written."""

    recipient: str
    kind: str
    event: str  # key in EVENTS: the event whose creation notified
    read: bool = False


# What the contract says the setup notifies, and nothing more: a PRIVATE event (status
# or comment, whoever it mentions) and one's own comment notify nobody, a deleted
# event's notifications go with it (``deleted_public`` mentioned ``other``), and a
# comment that also mentions the target's author is one COMMENT. Staff get nothing.
NOTIFIED: tuple[Note, ...] = (
    Note(BYSTANDER, "MENTION", "public_status"),
    Note(OTHER, "MENTION", "public_comment"),
    Note(AUTHOR, "COMMENT", "bystander_comment", read=True),  # read by the setup
    Note(OTHER, "MENTION", "bystander_comment"),
    Note(SUPERUSER, "MENTION", "bystander_comment"),
    Note(AUTHOR, "MENTION", "bystander_mention"),
)


# Presence: whom the setup signs in, in this order (Django's ``user_logged_in``), and
# whom it signs out again (``user_logged_out``). Staff and superuser are never seen.
SIGNED_IN = (OTHER, AUTHOR, BYSTANDER)
SIGNED_OUT = (OTHER,)
ONLINE = tuple(name for name in SIGNED_IN if name not in SIGNED_OUT)
NEVER_SEEN = PresenceState(online=False, last_seen=None)


@dataclass
class World:
    """The users, their tokens and the global ids of the events of the setup."""

    users: dict[str, User]
    tokens: dict[str, str]
    ids: dict[str, str]  # event key -> global id (also of the deleted events)
    private_ids: dict[str, set[str]]  # owner -> global ids of their private events
    notes: dict[Note, int]  # each notification of NOTIFIED -> its pk
    presence: dict[str, PresenceState]  # each user's, as the setup left it

    def notification_refs(self, recipient: str) -> set[str]:
        """The global ids and cursors of a recipient's notifications."""
        return {
            ref
            for note, pk in self.notes.items()
            if note.recipient == recipient
            for ref in (encode_global_id("Notification", pk), encode_notification_cursor(pk))
        }


def _create_status(actor: User, text: str, visibility: str) -> StatusChange:
    return StatusChange.objects.create(actor=actor, status=text, visibility=visibility)


def _create_and_delete_status(actor: User, text: str, visibility: str) -> str:
    """Create a status change, delete it, and return the global id it had."""
    status = _create_status(actor, text, visibility)
    global_id = encode_global_id("StatusChange", status.pk)
    status.delete()
    return global_id


def build_world() -> World:
    """Write the setup through the models, so that the real signals log every step."""
    users: dict[str, User] = {}
    for name, flags in USER_FLAGS.items():
        user = User(username=name, email=email_of(name), **flags)
        user.set_password(PASSWORD)
        user.save()
        users[name] = user
    author = users[AUTHOR]
    public_status = _create_status(author, EVENTS["public_status"].text, Visibility.PUBLIC)
    private_status = _create_status(author, PRIVATE_STATUS, Visibility.PRIVATE)
    saved: dict[str, Event] = {
        "public_status": public_status,
        "private_status": private_status,
        "public_comment": Comment.objects.create(
            actor=author, body=EVENTS["public_comment"].text, target=private_status
        ),
        "private_comment": Comment.objects.create(
            actor=author, body=PRIVATE_COMMENT, target=public_status, visibility=Visibility.PRIVATE
        ),
        "bystander_status": _create_status(users[BYSTANDER], BYSTANDER_STATUS, Visibility.PRIVATE),
        "bystander_comment": Comment.objects.create(
            actor=users[BYSTANDER], body=BYSTANDER_COMMENT, target=public_status
        ),
        "bystander_private_comment": Comment.objects.create(
            actor=users[BYSTANDER],
            body=BYSTANDER_PRIVATE_COMMENT,
            target=public_status,
            visibility=Visibility.PRIVATE,
        ),
        "bystander_mention": _create_status(users[BYSTANDER], BYSTANDER_MENTION, Visibility.PUBLIC),
    }
    private_status.status = PRIVATE_STATUS_EDITED
    private_status.save()
    ids = {key: encode_global_id(type(event).__name__, event.pk) for key, event in saved.items()}
    ids["deleted_private"] = _create_and_delete_status(
        author, DELETED_PRIVATE_STATUS, Visibility.PRIVATE
    )
    ids["deleted_public"] = _create_and_delete_status(
        author, DELETED_PUBLIC_STATUS, Visibility.PUBLIC
    )
    private_ids = {
        AUTHOR: {ids["private_status"], ids["private_comment"], ids["deleted_private"]},
        BYSTANDER: {ids["bystander_status"], ids["bystander_private_comment"]},
    }
    notes = {note: _notification_of(note, users, saved) for note in NOTIFIED}
    Notification.objects.filter(pk__in=[pk for note, pk in notes.items() if note.read]).update(
        read=True
    )
    tokens = {name: token_issue(user=user) for name, user in users.items()}
    for name in SIGNED_IN:
        user_logged_in.send(sender=User, request=None, user=users[name])
        time.sleep(0.002)  # each one seen strictly after the one before
    for name in SIGNED_OUT:
        user_logged_out.send(sender=User, request=None, user=users[name])
    states = presence_tracker().states([user.pk for user in users.values()])
    presence = {name: states[user.pk] for name, user in users.items()}
    return World(
        users=users,
        tokens=tokens,
        ids=ids,
        private_ids=private_ids,
        notes=notes,
        presence=presence,
    )


def _notification_of(note: Note, users: dict[str, User], saved: dict[str, Event]) -> int:
    """The pk of the one notification ``note`` describes (the setup must have written it)."""
    found = Notification.objects.filter(
        recipient=users[note.recipient], kind=note.kind, event_pk=saved[note.event].pk
    ).values_list("pk", flat=True)
    assert len(found) == 1, f"{note} was not written once: {list(found)}"
    return found[0]


@pytest.fixture
def world(db: None) -> Iterator[World]:
    cache.clear()  # login throttling counts live in the cache: start from none
    with override_settings(REDIS_URL=""):  # this process's presence, nobody online yet
        reset_presence_tracker()
        presence_tracker()
    yield build_world()
    reset_presence_tracker()
    cache.clear()


# What a viewer should get: the oracle the table rows are written with ---------------


def as_graphql_datetime(timestamp: float | None) -> str | None:
    """A Unix time as the ``DateTime`` scalar writes it (ISO 8601, UTC)."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()


@dataclass(frozen=True)
class Ctx:
    """One viewer looking at the world; renders what the contract lets it see."""

    world: World
    viewer: str

    def gid(self, key: str) -> str:
        return self.world.ids[key]

    def unknown(self, type_name: str) -> str:
        """A well-formed global id that names no row."""
        return encode_global_id(type_name, UNKNOWN_PK)

    def uid(self, name: str) -> str:
        return encode_global_id("User", self.world.users[name].pk)

    def user(self, name: str) -> dict[str, Any]:
        """A ``User { username email online lastSeenAt }``: the address only for the
        user themself, the presence only for signed-in viewers (``false``/``null`` for
        everyone when anonymous)."""
        return {
            "username": name,
            "email": email_of(name) if name == self.viewer else None,
            **self.presence(name),
        }

    def presence(self, name: str) -> dict[str, Any]:
        """``online`` and ``lastSeenAt`` of a user (never seen if not in the setup)."""
        state = self.world.presence.get(name, NEVER_SEEN)
        if self.viewer == ANONYMOUS:
            state = NEVER_SEEN
        return {"online": state.online, "lastSeenAt": as_graphql_datetime(state.last_seen)}

    def online_users(self, first: int = 50) -> dict[str, Any]:
        """``onlineUsers``: the users online, most recently seen first."""
        online = [name for name, state in self.world.presence.items() if state.online]
        online.sort(key=lambda name: -(self.world.presence[name].last_seen or 0))
        return {"onlineUsers": [self.user(name) for name in online[:first]]}

    def may_see(self, key: str) -> bool:
        spec = EVENTS[key]
        return spec.visibility == "PUBLIC" or spec.owner == self.viewer

    def event(self, key: str, text: str | None = None, nested: bool = False) -> dict[str, Any]:
        """An event selected with ``EVENT_FIELDS`` (``nested``: as a comment's target)."""
        spec = EVENTS[key]
        rendered: dict[str, Any] = {
            "__typename": spec.type_name,
            "id": self.gid(key),
            "visibility": spec.visibility,
            "actor": self.user(spec.owner),
            "status" if spec.type_name == "StatusChange" else "body": text or spec.text,
        }
        if spec.type_name == "Comment" and not nested:
            target = spec.target
            visible = target is not None and self.may_see(target)
            rendered["target"] = self.event(target, nested=True) if target and visible else None
        return rendered

    def events(self, *keys: str, total: int | None = None) -> dict[str, Any]:
        """An ``events`` connection holding ``keys`` (newest first)."""
        return {
            "events": {
                "totalCount": len(keys) if total is None else total,
                "edges": [{"node": self.event(key)} for key in keys],
            }
        }

    def activity(self, step: Step) -> dict[str, Any]:
        """An activity selected with ``ACTIVITY_FIELDS``."""
        return {
            "kind": step.kind,
            "verb": step.verb,
            "message": step.message,
            "eventId": self.gid(step.event) if step.event else None,
            "actor": self.user(step.actor),
            "event": (
                self.event(step.event) if step.event in EVENTS and step.verb != "DELETED" else None
            ),
        }

    def history(self) -> list[dict[str, Any]]:
        """The activities this viewer may see: public ones, and private ones of its own."""
        return [
            self.activity(step) for step in HISTORY if not step.private or step.actor == self.viewer
        ]

    # Notifications: the viewer's own, never anyone else's (staff included).

    def inbox(self, unread_only: bool = False) -> list[tuple[Note, int]]:
        """The viewer's notifications (with their pks), newest first."""
        own = [
            (note, pk)
            for note, pk in self.world.notes.items()
            if note.recipient == self.viewer and not (unread_only and note.read)
        ]
        return sorted(own, key=lambda item: -item[1])

    def notification(self, note: Note, pk: int) -> dict[str, Any]:
        """A notification selected with ``NOTIFICATION_FIELDS``."""
        (step,) = (s for s in HISTORY if s.event == note.event and s.verb == "CREATED")
        return {
            "id": encode_global_id("Notification", pk),
            "cursor": encode_notification_cursor(pk),
            "kind": note.kind,
            "read": note.read,
            "activity": self.activity(step),
        }

    def notifications(
        self, first: int = 20, offset: int = 0, unread_only: bool = False
    ) -> dict[str, Any]:
        """A ``notifications`` connection: ``first`` of the inbox after ``offset`` items."""
        inbox = self.inbox(unread_only)
        page = inbox[offset : offset + first]
        edges = [
            {
                "cursor": to_base64(CONNECTION_CURSOR_PREFIX, offset + n),
                "node": self.notification(*item),
            }
            for n, item in enumerate(page)
        ]
        return {
            "notifications": {
                "totalCount": len(inbox),
                "edges": edges,
                "pageInfo": {
                    "hasNextPage": offset + first < len(inbox),
                    "endCursor": edges[-1]["cursor"] if edges else None,
                },
            }
        }

    def unread(self, marked: Callable[[Note, int], bool] = lambda note, pk: False) -> set[int]:
        """The pks of every unread notification (anyone's) once the viewer's own that
        ``marked`` picks are read: what ``markNotificationsRead`` must leave."""
        return {
            pk
            for note, pk in self.world.notes.items()
            if not note.read and not (note.recipient == self.viewer and marked(note, pk))
        }

    def unread_count(self, unread: set[int] | None = None) -> int:
        """How many of the viewer's notifications are among ``unread`` (default: now)."""
        left = self.unread() if unread is None else unread
        return len(
            {pk for note, pk in self.world.notes.items() if note.recipient == self.viewer} & left
        )

    def others_notifications(self) -> list[int]:
        """The pks of every notification that is not the viewer's, oldest first."""
        return sorted(pk for note, pk in self.world.notes.items() if note.recipient != self.viewer)


def assert_nothing_private_leaks(body: dict[str, Any], c: Ctx, echoes: tuple[str, ...]) -> None:
    """No private text, private event id, notification (id or cursor) or e-mail address
    of anyone but the viewer.

    ``echoes`` are fragments the request itself sent (an address given to createUser).
    """
    found = list(strings_in(body))
    others = [name for name in USER_FLAGS if name != c.viewer]
    fragments = [email_of(name) for name in others]
    fragments += [marker for name in others for marker in SECRET_MARKERS.get(name, ())]
    for fragment in fragments:
        if fragment in echoes:
            continue
        leaked = [text for text in found if fragment in text]
        assert not leaked, f"{fragment!r} reached {c.viewer}: {leaked}"
    for name in others:
        leaked_ids = c.world.private_ids.get(name, set()) & set(found)
        assert not leaked_ids, f"private ids of {name} reached {c.viewer}: {leaked_ids}"
        leaked_refs = c.world.notification_refs(name) & set(found)
        assert not leaked_refs, f"notifications of {name} reached {c.viewer}: {leaked_refs}"


# The table -----------------------------------------------------------------------------

Vars = Callable[[Ctx], dict[str, Any]]
Expect = Callable[[Ctx], Any]


@dataclass(frozen=True)
class Outcome:
    """What one viewer class gets: exactly ``data``, or one error with ``code``."""

    data: Expect | None = None
    code: str | None = None
    message: str | None = None
    fields: tuple[str, ...] = ()  # the keys of the error's ``extensions.fields``
    same_as: Vars | None = None  # the whole answer equals the answer to these variables


def ok(data: Expect) -> Outcome:
    return Outcome(data=data)


def fails(
    code: str, same_as: Vars | None = None, message: str | None = None, fields: tuple[str, ...] = ()
) -> Outcome:
    return Outcome(code=code, same_as=same_as, message=message, fields=fields)


UNAUTHENTICATED = fails("UNAUTHENTICATED")
FORBIDDEN = fails("FORBIDDEN")
BAD_LOGIN = "Invalid username or password."


@dataclass(frozen=True)
class Row:
    """One operation and the outcome for each viewer class."""

    name: str
    document: str
    variables: Vars
    anonymous: Outcome
    stranger: Outcome  # another user, a staff user, a superuser: none owns the events
    owner: Outcome
    reveals: tuple[str, ...] = ()  # fragments the owner's answer must contain
    echoes: tuple[str, ...] = ()  # fragments allowed because the request itself sent them
    # The pks of every unread notification (anyone's) once the call is done, if it
    # may mark any: checked for every viewer, so nobody marks another's.
    unread_after: Callable[[Ctx], set[int]] | None = None
    known_bugs: tuple[tuple[str, str], ...] = ()  # (viewer, what goes wrong): strict xfail

    def outcome(self, viewer: str) -> Outcome:
        if viewer == ANONYMOUS:
            return self.anonymous
        return self.owner if viewer == AUTHOR else self.stranger


class Outcomes(TypedDict):
    """The outcome columns of a ``Row``, to spread into one with ``**``."""

    anonymous: Outcome
    stranger: Outcome
    owner: Outcome


def everyone(outcome: Outcome) -> Outcomes:
    """The same outcome for every viewer class."""
    return {"anonymous": outcome, "stranger": outcome, "owner": outcome}


def signed_in(outcome: Outcome) -> Outcomes:
    """``UNAUTHENTICATED`` when anonymous, ``outcome`` for anyone signed in."""
    return {"anonymous": UNAUTHENTICATED, "stranger": outcome, "owner": outcome}


def by_id(key: str) -> Vars:
    return lambda c: {"id": c.gid(key)}


def unknown_id(type_name: str = "StatusChange") -> Vars:
    return lambda c: {"id": c.unknown(type_name)}


def like_unknown(code: str, type_name: str = "StatusChange") -> Outcome:
    """Error ``code``, answered exactly as for an event id that does not exist."""
    return fails(code, same_as=unknown_id(type_name))


def hidden_event() -> Outcome:
    """``event: null``, answered exactly as for an event id that does not exist."""
    return Outcome(data=lambda c: {"event": None}, same_as=unknown_id())


def secrets_of(*keys: str) -> tuple[str, ...]:
    """The secret markers in the texts of the events ``keys``."""
    return tuple(
        word for key in keys for word in EVENTS[key].text.split() if word.startswith("SECRET-")
    )


EVENT_FIELDS = """
  __typename id visibility actor { username email online lastSeenAt }
  ... on StatusChange { status }
  ... on Comment {
    body
    target {
      __typename id visibility actor { username email online lastSeenAt }
      ... on StatusChange { status }
      ... on Comment { body }
    }
  }"""
ME = "{ me { username email online lastSeenAt } }"
USER = "query($id: ID!) { user(id: $id) { username email online lastSeenAt } }"
USERS = "{ users(first: 50) { totalCount edges { node { username email online lastSeenAt } } } }"
EVENT = "query($id: ID!) { event(id: $id) {" + EVENT_FIELDS + "} }"
EVENTS_QUERY = (
    "query($first: Int, $kind: EventKind, $actorId: ID) {"
    " events(first: $first, kind: $kind, actorId: $actorId) {"
    " totalCount edges { node {" + EVENT_FIELDS + "} } } }"
)
ACTIVITY_FIELDS = (
    "kind verb message eventId actor { username email online lastSeenAt }"
    " event {" + EVENT_FIELDS + "}"
)
ACTIVITIES = "{ activities(first: 100) { " + ACTIVITY_FIELDS + " } }"
NOTIFICATION_FIELDS = "id cursor kind read activity { " + ACTIVITY_FIELDS + " }"
NOTIFICATIONS = (
    "query($first: Int, $after: String, $unread: Boolean) {"
    " notifications(first: $first, after: $after, unreadOnly: $unread) {"
    " totalCount edges { cursor node { " + NOTIFICATION_FIELDS + " } }"
    " pageInfo { hasNextPage endCursor } } }"
)
UNREAD_COUNT = "{ unreadNotificationCount }"
ONLINE_USERS = (
    "query($first: Int) { onlineUsers(first: $first) { username email online lastSeenAt } }"
)

AUTHORS_OWN = ("private_comment", "public_comment", "private_status", "public_status")
AUTHORS_PUBLIC = ("public_comment", "public_status")
BYSTANDERS_PUBLIC = ("bystander_mention", "bystander_comment")
OWN_EVENTS = (*BYSTANDERS_PUBLIC, *AUTHORS_OWN)
PUBLIC_EVENTS = (*BYSTANDERS_PUBLIC, *AUTHORS_PUBLIC)


def events_row(
    public: tuple[str, ...],
    own: tuple[str, ...],
    first: int = 50,
    kind: str | None = None,
    actor: str | None = None,
) -> Row:
    """``events``: the author gets ``own``, everyone else ``public`` (newest first)."""

    named = (("first", first), ("kind", kind), ("actorId", actor))
    arguments = ", ".join(f"{name}: {value}" for name, value in named if value is not None)

    def variables(c: Ctx) -> dict[str, Any]:
        return {"first": first, "kind": kind, "actorId": c.uid(actor) if actor else None}

    def page(keys: tuple[str, ...]) -> Expect:
        return lambda c: c.events(*keys[:first], total=len(keys))

    return Row(
        f"events({arguments})",
        EVENTS_QUERY,
        variables,
        anonymous=ok(page(public)),
        stranger=ok(page(public)),
        owner=ok(page(own)),
        reveals=secrets_of(*own[:first]),
    )


def event_row(key: str) -> Row:
    """``event(id)``: a private one is ``null`` for anyone but its owner."""
    spec = EVENTS[key]
    shown = ok(lambda c: {"event": c.event(key)})
    if spec.visibility == "PUBLIC":
        return Row(f"event: {key}", EVENT, by_id(key), **everyone(shown))
    if spec.owner != AUTHOR:
        return Row(f"event: {key}", EVENT, by_id(key), **everyone(hidden_event()))
    return Row(
        f"event: {key}",
        EVENT,
        by_id(key),
        anonymous=hidden_event(),
        stranger=hidden_event(),
        owner=shown,
        reveals=(*secrets_of(key), email_of(AUTHOR)),
    )


def first_page_cursor(c: Ctx) -> str:
    """The cursor of the first item of any connection (the same for every viewer)."""
    return to_base64(CONNECTION_CURSOR_PREFIX, 0)


# Every signed-in viewer gets exactly their own inbox: the author a read COMMENT and an
# unread MENTION, ``other`` two MENTIONs (one of a comment whose target it may not
# see), ``superuser`` one MENTION, ``staff`` nothing.
NOTIFICATION_QUERIES: tuple[Row, ...] = (
    Row(
        "notifications",
        NOTIFICATIONS,
        lambda c: {},
        **signed_in(ok(lambda c: c.notifications())),
        reveals=(BYSTANDER_COMMENT, BYSTANDER_MENTION),
    ),
    Row(
        "notifications(unreadOnly: false)",
        NOTIFICATIONS,
        lambda c: {"unread": False},
        **signed_in(ok(lambda c: c.notifications())),
    ),
    Row(
        "notifications(unreadOnly: true)",
        NOTIFICATIONS,
        lambda c: {"unread": True},
        **signed_in(ok(lambda c: c.notifications(unread_only=True))),
        reveals=(BYSTANDER_MENTION,),
    ),
    Row(
        "notifications(first: 1)",
        NOTIFICATIONS,
        lambda c: {"first": 1},
        **signed_in(ok(lambda c: c.notifications(first=1))),
    ),
    Row(
        "notifications(first: 1, after: first)",
        NOTIFICATIONS,
        lambda c: {"first": 1, "after": first_page_cursor(c)},
        **signed_in(ok(lambda c: c.notifications(first=1, offset=1))),
        reveals=(BYSTANDER_COMMENT,),
    ),
    Row(
        "notifications(unreadOnly: true, after: first)",
        NOTIFICATIONS,
        lambda c: {"unread": True, "after": first_page_cursor(c)},
        **signed_in(ok(lambda c: c.notifications(offset=1, unread_only=True))),
    ),
    Row(
        "notifications(after: a notification cursor)",
        NOTIFICATIONS,
        lambda c: {"after": encode_notification_cursor(c.world.notes[NOTIFIED[0]])},
        **signed_in(
            fails("BAD_USER_INPUT", fields=("after",), same_as=lambda c: {"after": "junk"})
        ),
    ),
    Row(
        "unreadNotificationCount",
        UNREAD_COUNT,
        lambda c: {},
        **signed_in(ok(lambda c: {"unreadNotificationCount": c.unread_count()})),
    ),
)


def online_users_row(first: int | None) -> Row:
    """``onlineUsers``: the same users for every signed-in viewer, within the page cap."""
    size = 50 if first is None else first  # the contract's default

    def variables(c: Ctx) -> dict[str, Any]:
        return {} if first is None else {"first": first}

    name = "onlineUsers" if first is None else f"onlineUsers(first: {first})"
    if not 0 <= size <= 100:  # the contract's cap on ``first``
        refused = fails("BAD_USER_INPUT", fields=("first",))
        return Row(name, ONLINE_USERS, variables, **signed_in(refused))
    author_listed = AUTHOR in ONLINE[::-1][:size]  # most recently seen first
    return Row(
        name,
        ONLINE_USERS,
        variables,
        **signed_in(ok(lambda c: c.online_users(size))),
        reveals=(email_of(AUTHOR),) if author_listed else (),
    )


# Signed-in viewers alone, all alike: the author and the bystander are online (the
# bystander seen last), ``other`` signed out again, staff and superuser never seen.
PRESENCE_QUERIES: tuple[Row, ...] = (
    *(online_users_row(first) for first in (None, 0, 1, 2, 100, 101, -1)),
    Row(
        "user: other (signed out)",
        USER,
        lambda c: {"id": c.uid(OTHER)},
        **everyone(ok(lambda c: {"user": c.user(OTHER)})),
    ),
    Row(
        "user: staff (never seen)",
        USER,
        lambda c: {"id": c.uid(STAFF)},
        **everyone(ok(lambda c: {"user": c.user(STAFF)})),
    ),
)

QUERIES: tuple[Row, ...] = (
    Row(
        "me",
        ME,
        lambda c: {},
        anonymous=ok(lambda c: {"me": None}),
        stranger=ok(lambda c: {"me": c.user(c.viewer)}),
        owner=ok(lambda c: {"me": c.user(AUTHOR)}),
        reveals=(email_of(AUTHOR),),
    ),
    Row(
        "user: author",
        USER,
        lambda c: {"id": c.uid(AUTHOR)},
        **everyone(ok(lambda c: {"user": c.user(AUTHOR)})),
        reveals=(email_of(AUTHOR),),
    ),
    Row(
        "user: bystander",
        USER,
        lambda c: {"id": c.uid(BYSTANDER)},
        **everyone(ok(lambda c: {"user": c.user(BYSTANDER)})),
    ),
    Row(
        "users",
        USERS,
        lambda c: {},
        **everyone(
            ok(
                lambda c: {
                    "users": {
                        "totalCount": len(USER_FLAGS),
                        "edges": [{"node": c.user(name)} for name in USER_FLAGS],
                    }
                }
            )
        ),
        reveals=(email_of(AUTHOR),),
    ),
    *(event_row(key) for key in EVENTS),
    Row("event: unknown id", EVENT, unknown_id(), **everyone(ok(lambda c: {"event": None}))),
    Row(
        "event: malformed id",
        EVENT,
        lambda c: {"id": "nope"},
        **everyone(hidden_event()),
    ),
    events_row(PUBLIC_EVENTS, OWN_EVENTS),
    events_row(PUBLIC_EVENTS, OWN_EVENTS, first=1),
    events_row(
        ("bystander_mention", "public_status"),
        ("bystander_mention", "private_status", "public_status"),
        kind="STATUS_CHANGE",
    ),
    events_row(
        ("bystander_comment", "public_comment"),
        ("bystander_comment", "private_comment", "public_comment"),
        kind="COMMENT",
    ),
    events_row(AUTHORS_PUBLIC, AUTHORS_OWN, actor=AUTHOR),
    events_row(("public_comment",), ("private_comment", "public_comment"), 1, "COMMENT", AUTHOR),
    events_row(BYSTANDERS_PUBLIC, BYSTANDERS_PUBLIC, actor=BYSTANDER),
    Row(
        "activities",
        ACTIVITIES,
        lambda c: {},
        **everyone(ok(lambda c: {"activities": c.history()})),
        reveals=("SECRET-STATUS", "SECRET-COMMENT", "SECRET-DELETED", email_of(AUTHOR)),
    ),
    *NOTIFICATION_QUERIES,
    *PRESENCE_QUERIES,
)


CREATE_USER = """
mutation($input: CreateUserInput!) {
  createUser(input: $input) { username email online lastSeenAt }
}"""
LOGIN = """
mutation($u: String!, $p: String!) {
  login(username: $u, password: $p) { token user { username email online lastSeenAt } }
}"""
LOGOUT = "mutation { logout }"
UPDATE_PROFILE = 'mutation { updateProfile(input: {bio: "new bio"}) { website bio } }'
CREATE_STATUS = """
mutation($v: Visibility) {
  createStatusChange(input: {status: "fresh status", visibility: $v}) {
    __typename visibility actor { username email online lastSeenAt } status
  }
}"""
EDITED = "edited by the viewer"
# The concrete result types take the shared selection through ``... on Event``.
UPDATE_STATUS = (
    f'mutation($id: ID!) {{ updateStatusChange(id: $id, status: "{EDITED}") {{'
    f" ... on Event {{ {EVENT_FIELDS} }} }} }}"
)
UPDATE_COMMENT = (
    f'mutation($id: ID!) {{ updateComment(id: $id, body: "{EDITED}") {{'
    f" ... on Event {{ {EVENT_FIELDS} }} }} }}"
)
CREATE_COMMENT = """
mutation($id: ID) {
  createComment(input: {body: "fresh comment", targetId: $id}) {
    __typename visibility actor { username email online lastSeenAt } body
    target {
      __typename id visibility actor { username email online lastSeenAt }
      ... on StatusChange { status }
      ... on Comment { body }
    }
  }
}"""
DELETE_EVENT = "mutation($id: ID!) { deleteEvent(id: $id) }"
MARK_READ = "mutation($ids: [ID!], $upTo: String) { markNotificationsRead(ids: $ids, upTo: $upTo) }"


def new_account(email: Callable[[Ctx], str], username: str = "", password: str = PASSWORD) -> Vars:
    """createUser input: a fresh username per viewer unless ``username`` is given."""
    return lambda c: {
        "input": {
            "username": username or f"new-{c.viewer}",
            "email": email(c),
            "password": password,
        }
    }


def fresh_email(c: Ctx) -> str:
    return f"new.{c.viewer}@mail.test"


def bystanders_email(c: Ctx) -> str:
    return email_of(BYSTANDER)


def created_user(email: Callable[[Ctx], str]) -> Expect:
    """The answer to ``CREATE_USER`` for ``new_account``: a user nobody has seen yet."""
    return lambda c: {
        "createUser": {
            "username": f"new-{c.viewer}",
            "email": email(c),
            **c.presence(f"new-{c.viewer}"),
        }
    }


def created_comment(target: str | None) -> Expect:
    """The answer to ``CREATE_COMMENT`` on ``target``, made by the viewer."""
    return lambda c: {
        "createComment": {
            "__typename": "Comment",
            "visibility": "PUBLIC",
            "actor": c.user(c.viewer),
            "body": "fresh comment",
            "target": c.event(target, nested=True) if target else None,
        }
    }


def update_row(name: str, document: str, key: str, result: str) -> Row:
    """Editing an event: the owner may, others get FORBIDDEN, or NOT_FOUND when private."""
    spec = EVENTS[key]
    edited = ok(lambda c: {result: c.event(key, text=EDITED)})
    if spec.visibility == "PUBLIC":
        stranger = FORBIDDEN
    else:
        stranger = like_unknown("NOT_FOUND", spec.type_name)
    return Row(
        f"{name}: {key}",
        document,
        by_id(key),
        anonymous=like_unknown("UNAUTHENTICATED", spec.type_name),
        stranger=stranger,
        owner=edited,
    )


def delete_row(key: str) -> Row:
    spec = EVENTS[key]
    if spec.owner != AUTHOR and spec.visibility == "PUBLIC":  # seen by all, owned by none
        return Row(
            f"deleteEvent: {key}",
            DELETE_EVENT,
            by_id(key),
            anonymous=like_unknown("UNAUTHENTICATED"),
            stranger=FORBIDDEN,
            owner=FORBIDDEN,
        )
    if spec.owner != AUTHOR:  # a private event of the bystander: nobody here may know of it
        return Row(
            f"deleteEvent: {key}",
            DELETE_EVENT,
            by_id(key),
            anonymous=like_unknown("UNAUTHENTICATED"),
            stranger=like_unknown("NOT_FOUND"),
            owner=like_unknown("NOT_FOUND"),
        )
    return Row(
        f"deleteEvent: {key}",
        DELETE_EVENT,
        by_id(key),
        anonymous=like_unknown("UNAUTHENTICATED"),
        stranger=FORBIDDEN if spec.visibility == "PUBLIC" else like_unknown("NOT_FOUND"),
        owner=ok(lambda c: {"deleteEvent": True}),
    )


def comment_on_row(key: str) -> Row:
    """createComment with ``targetId``: a target the viewer may not see does not exist."""
    spec = EVENTS[key]
    unknown = unknown_id(spec.type_name)
    allowed = ok(created_comment(key))
    refused = fails("NOT_FOUND", same_as=unknown)
    return Row(
        f"createComment: on {key}",
        CREATE_COMMENT,
        by_id(key),
        anonymous=fails("UNAUTHENTICATED", same_as=unknown),
        stranger=allowed if spec.visibility == "PUBLIC" else refused,
        owner=allowed if spec.visibility == "PUBLIC" or spec.owner == AUTHOR else refused,
        reveals=secrets_of(key) if spec.owner == AUTHOR else (),
    )


Marked = Callable[[Ctx, Note, int], bool]  # whether a call marks one of the viewer's own


def notification_id(pk: int) -> str:
    return encode_global_id("Notification", pk)


def mark_row(name: str, variables: Vars, marked: Marked) -> Row:
    """markNotificationsRead: marks what ``marked`` picks of the caller's own, answers
    the caller's new unread count, and leaves everyone else's notifications unread."""

    def unread_after(c: Ctx) -> set[int]:
        return c.unread(lambda note, pk: marked(c, note, pk))

    return Row(
        f"markNotificationsRead: {name}",
        MARK_READ,
        variables,
        **signed_in(ok(lambda c: {"markNotificationsRead": c.unread_count(unread_after(c))})),
        unread_after=unread_after,
    )


def own_ids(c: Ctx) -> list[str]:
    return [notification_id(pk) for _, pk in c.inbox()]


def others_ids(c: Ctx) -> list[str]:
    return [notification_id(pk) for pk in c.others_notifications()]


def own_newest_pk(c: Ctx) -> int:
    """The pk of the viewer's newest notification (0 when it has none)."""
    inbox = c.inbox()
    return inbox[0][1] if inbox else 0


def others_newest_pk(c: Ctx) -> int:
    return max(c.others_notifications())


def mark_refused(name: str, variables: Vars, field: str) -> Row:
    """markNotificationsRead with input it refuses: nothing is marked."""
    return Row(
        f"markNotificationsRead: {name}",
        MARK_READ,
        variables,
        **signed_in(fails("BAD_USER_INPUT", fields=(field,))),
        unread_after=lambda c: c.unread(),
    )


NOTIFICATION_MUTATIONS: tuple[Row, ...] = (
    mark_row("own ids", lambda c: {"ids": own_ids(c)}, lambda c, note, pk: True),
    mark_row(
        "own read id",
        lambda c: {"ids": [notification_id(pk) for note, pk in c.inbox() if note.read]},
        lambda c, note, pk: note.read,
    ),
    mark_row("another user's ids", lambda c: {"ids": others_ids(c)}, lambda c, note, pk: False),
    mark_row(
        "own and another user's ids",
        lambda c: {"ids": others_ids(c) + own_ids(c)},
        lambda c, note, pk: True,
    ),
    mark_row("ids: []", lambda c: {"ids": []}, lambda c, note, pk: False),
    mark_row(
        "ids: unknown",
        lambda c: {"ids": [c.unknown("Notification")]},
        lambda c, note, pk: False,
    ),
    mark_row(
        "upTo: own newest",
        lambda c: {"upTo": encode_notification_cursor(own_newest_pk(c))},
        lambda c, note, pk: True,
    ),
    # Marks the caller's own up to that id, and nothing of the other user's.
    mark_row(
        "upTo: another user's newest",
        lambda c: {"upTo": encode_notification_cursor(others_newest_pk(c))},
        lambda c, note, pk: pk <= others_newest_pk(c),
    ),
    mark_row(
        "upTo: another user's oldest",
        lambda c: {"upTo": encode_notification_cursor(min(c.others_notifications()))},
        lambda c, note, pk: pk <= min(c.others_notifications()),
    ),
    mark_row("no arguments", lambda c: {}, lambda c, note, pk: True),
    mark_row("ids: null, upTo: null", lambda c: {"ids": None, "upTo": None}, lambda c, n, pk: True),
    mark_refused(
        "ids and upTo",
        lambda c: {"ids": others_ids(c), "upTo": encode_notification_cursor(others_newest_pk(c))},
        "ids",
    ),
    mark_refused("ids: an event's id", lambda c: {"ids": [c.gid("public_status")]}, "ids"),
    mark_refused("ids: malformed", lambda c: {"ids": ["nope"]}, "ids"),
    mark_refused(
        "upTo: an activity cursor",
        lambda c: {"upTo": encode_activity_cursor(UNKNOWN_PK)},
        "upTo",
    ),
    mark_refused("upTo: malformed", lambda c: {"upTo": "nope"}, "upTo"),
)

MUTATIONS: tuple[Row, ...] = (
    Row(
        "createUser: fresh username and e-mail",
        CREATE_USER,
        new_account(fresh_email),
        **everyone(ok(created_user(fresh_email))),
    ),
    # Another user's address is accepted like a fresh one: nothing says it is in use.
    Row(
        "createUser: another user's e-mail",
        CREATE_USER,
        new_account(bystanders_email),
        **everyone(ok(created_user(bystanders_email))),
        echoes=(email_of(BYSTANDER),),
    ),
    # Usernames are public (``users``): saying one is taken reveals nothing new.
    Row(
        "createUser: taken username",
        CREATE_USER,
        new_account(fresh_email, username=BYSTANDER),
        **everyone(fails("BAD_USER_INPUT", fields=("username",))),
    ),
    Row(
        "createUser: taken username, another user's e-mail",
        CREATE_USER,
        new_account(bystanders_email, username=BYSTANDER),
        **everyone(
            fails(
                "BAD_USER_INPUT",
                fields=("username",),
                same_as=new_account(fresh_email, username=BYSTANDER),
            )
        ),
    ),
    Row(
        "createUser: weak password, another user's e-mail",
        CREATE_USER,
        new_account(bystanders_email, password="123"),
        **everyone(
            fails(
                "BAD_USER_INPUT",
                fields=("password",),
                same_as=new_account(fresh_email, password="123"),
            )
        ),
    ),
    Row(
        "login: wrong password",
        LOGIN,
        lambda c: {"u": AUTHOR, "p": "wrong password"},
        **everyone(
            fails(
                "UNAUTHENTICATED",
                message=BAD_LOGIN,
                same_as=lambda c: {"u": "nobody", "p": "wrong password"},
            )
        ),
    ),
    Row(
        "login: unknown username",
        LOGIN,
        lambda c: {"u": "nobody", "p": PASSWORD},
        **everyone(fails("UNAUTHENTICATED", message=BAD_LOGIN)),
    ),
    Row("logout", LOGOUT, lambda c: {}, **signed_in(ok(lambda c: {"logout": True}))),
    Row(
        "updateProfile",
        UPDATE_PROFILE,
        lambda c: {},
        **signed_in(ok(lambda c: {"updateProfile": {"website": "", "bio": "new bio"}})),
    ),
    Row(
        "createStatusChange: PRIVATE",
        CREATE_STATUS,
        lambda c: {"v": "PRIVATE"},
        **signed_in(
            ok(
                lambda c: {
                    "createStatusChange": {
                        "__typename": "StatusChange",
                        "visibility": "PRIVATE",
                        "actor": c.user(c.viewer),
                        "status": "fresh status",
                    }
                }
            )
        ),
    ),
    *(
        update_row("updateStatusChange", UPDATE_STATUS, key, "updateStatusChange")
        for key in ("public_status", "private_status")
    ),
    Row(
        "updateStatusChange: bystander_status",
        UPDATE_STATUS,
        by_id("bystander_status"),
        anonymous=like_unknown("UNAUTHENTICATED"),
        stranger=like_unknown("NOT_FOUND"),
        owner=like_unknown("NOT_FOUND"),
    ),
    Row(
        "updateStatusChange: unknown id",
        UPDATE_STATUS,
        unknown_id(),
        **signed_in(fails("NOT_FOUND")),
    ),
    *(
        update_row("updateComment", UPDATE_COMMENT, key, "updateComment")
        for key in ("public_comment", "private_comment")
    ),
    *(delete_row(key) for key in EVENTS),
    Row("deleteEvent: unknown id", DELETE_EVENT, unknown_id(), **signed_in(fails("NOT_FOUND"))),
    *(comment_on_row(key) for key in EVENTS),
    Row(
        "createComment: unknown target",
        CREATE_COMMENT,
        unknown_id(),
        **signed_in(fails("NOT_FOUND")),
    ),
    Row(
        "createComment: no target",
        CREATE_COMMENT,
        lambda c: {"id": None},
        **signed_in(ok(created_comment(None))),
    ),
    *NOTIFICATION_MUTATIONS,
)


# The tests -----------------------------------------------------------------------------


def snapshot() -> tuple[object, ...]:
    """Everything a mutation could write, to show that a refused one wrote nothing."""
    return (
        list(StatusChange.objects.order_by("pk").values_list("pk", "status", "visibility")),
        list(Comment.objects.order_by("pk").values_list("pk", "body", "target_id")),
        list(Activity.objects.order_by("pk").values_list("pk", "verb")),
        list(User.objects.order_by("pk").values_list("pk", "username", "email")),
        list(Profile.objects.order_by("pk").values_list("pk", "website", "bio")),
        list(
            Notification.objects.order_by("pk").values_list(
                "pk", "recipient_id", "kind", "activity_id", "event_pk", "read"
            )
        ),
    )


def unread_pks() -> set[int]:
    return set(Notification.objects.filter(read=False).values_list("pk", flat=True))


def check_row(client: Client, world: World, row: Row, viewer: str) -> None:
    """Run ``row`` as ``viewer`` and assert its outcome and that nothing private leaks."""
    c = Ctx(world, viewer)
    token = world.tokens.get(viewer)
    body = gql(client, row.document, row.variables(c), token)
    assert_nothing_private_leaks(body, c, row.echoes)
    outcome = row.outcome(viewer)
    if outcome.code is None:
        assert outcome.data is not None
        assert "errors" not in body, body
        assert body["data"] == outcome.data(c)
    else:
        assert body["data"] is None, body
        assert error_codes(body) == [outcome.code], body
        error = body["errors"][0]
        if outcome.message is not None:
            assert error["message"] == outcome.message
        assert tuple(sorted(error["extensions"].get("fields", {}))) == outcome.fields
    if outcome.same_as is not None:
        assert body == gql(client, row.document, outcome.same_as(c), token)
    if viewer == AUTHOR:
        found = list(strings_in(body))
        for fragment in row.reveals:
            assert any(fragment in text for text in found), f"{fragment!r} missing: {body}"
    if row.unread_after is not None:
        expected = c.unread() if outcome.code is not None else row.unread_after(c)
        assert unread_pks() == expected, f"{viewer} left these unread"


def row_id(row: Row) -> str:
    return row.name


def cases(rows: tuple[Row, ...]) -> list[Any]:
    """Every row as every viewer; a known product bug is a strict ``xfail``."""
    return [
        pytest.param(
            row,
            viewer,
            id=f"{row.name}-{viewer}",
            marks=[
                pytest.mark.xfail(strict=True, reason=reason)
                for bug_viewer, reason in row.known_bugs
                if bug_viewer == viewer
            ],
        )
        for row in rows
        for viewer in VIEWERS
    ]


@pytest.mark.parametrize(("row", "viewer"), cases(QUERIES))
def test_query(client: Client, world: World, row: Row, viewer: str) -> None:
    check_row(client, world, row, viewer)


@pytest.mark.parametrize(("row", "viewer"), cases(MUTATIONS))
def test_mutation(client: Client, world: World, row: Row, viewer: str) -> None:
    before = snapshot()
    check_row(client, world, row, viewer)
    if row.outcome(viewer).code is not None:
        assert snapshot() == before, "a refused mutation wrote something"


def test_the_setup_notifies_as_the_contract_says(world: World) -> None:
    """The table's premise: the setup wrote exactly the notifications of ``NOTIFIED``
    (none for a PRIVATE event, one's own comment, or a deleted event)."""
    written = Notification.objects.values_list("pk", "recipient_id", "kind", "read")
    expected = {
        (pk, world.users[note.recipient].pk, note.kind, note.read)
        for note, pk in world.notes.items()
    }
    assert set(written) == expected


LIVE_NOTIFICATIONS = (
    "subscription($after: String) { notifications(after: $after) {"
    " unreadCount notification { " + NOTIFICATION_FIELDS + " } } }"
)


def refused_as_anonymous(sink: RecordingSink, viewer: str) -> bool:
    """Check how a stream ended: an anonymous viewer gets UNAUTHENTICATED and nothing
    else (true); a signed-in one no error (false: the caller checks the payloads)."""
    assert not sink.errors and not sink.rejected and not sink.aborted
    if viewer == ANONYMOUS:
        codes = [(e.extensions or {}).get("code") for r in sink.results for e in r.errors or []]
        assert codes == ["UNAUTHENTICATED"] and sink.payloads == []
        return True
    assert sink.results == []
    return False


@pytest.mark.skipif(
    connection.vendor != "sqlite",
    reason="the world's rows live in this test's transaction, which the live engine's "
    "log reads do not share on PostgreSQL; there the same property is proven by the "
    "transactional tests/schema/test_notifications.py and tests/e2e/test_notifications.py",
)
@pytest.mark.parametrize("viewer", VIEWERS)
def test_the_notifications_subscription_replays_only_the_viewers_own(
    world: World, viewer: str
) -> None:
    """Replaying from the very start of the log: anonymous is refused, everyone else
    (staff and superuser too) gets exactly their own, oldest first, and nothing leaks."""
    c = Ctx(world, viewer)
    sink = RecordingSink()

    async def run() -> None:
        engine = get_engine(schema)
        variables = {"after": encode_notification_cursor(0)}
        subscriber = await subscribe(
            engine, sink, LIVE_NOTIFICATIONS, variables, world.users.get(viewer)
        )
        if subscriber is not None:
            engine.end(subscriber)

    async_to_sync(run)()
    if refused_as_anonymous(sink, viewer):
        return
    assert sink.payloads == [
        {
            "data": {
                "notifications": {
                    "unreadCount": c.unread_count(),
                    "notification": c.notification(*item),
                }
            }
        }
        for item in reversed(c.inbox())
    ]
    assert_nothing_private_leaks({"payloads": sink.payloads}, c, ())


def test_the_setup_leaves_presence_as_the_table_says(world: World) -> None:
    """The table's premise: whom the setup signed in and not out is online, the one
    signed in last seen last; ``other`` was last seen signing out, and is offline; staff
    and superuser were never seen."""
    presence = world.presence
    assert ONLINE == (AUTHOR, BYSTANDER)
    assert [name for name in USER_FLAGS if presence[name].online] == [AUTHOR, BYSTANDER]
    assert presence[STAFF] == presence[SUPERUSER] == NEVER_SEEN
    seen = [presence[name].last_seen or 0.0 for name in (AUTHOR, BYSTANDER, OTHER)]
    assert seen == sorted(set(seen)), "not seen in the order signed in and out"
    assert not presence[OTHER].online
    assert time.time() - 60 < seen[0]


LIVE_PRESENCE = (
    "subscription { presence { online lastSeenAt user { username email online lastSeenAt } } }"
)


async def until_delivered(sink: RecordingSink, count: int, timeout: float = 10) -> None:
    """Wait until ``sink`` holds ``count`` payloads (the caller asserts what they are)."""
    deadline = time.monotonic() + timeout
    while len(sink.payloads) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("viewer", VIEWERS)
def test_the_presence_subscription_streams_to_signed_in_viewers_only(
    world: World, viewer: str
) -> None:
    """Anonymous is refused; everyone else (staff and superuser too) gets each transition
    of the bystander (never a viewer), with the presence signed-in viewers see."""
    c = Ctx(world, viewer)
    sink = RecordingSink()
    tracker, bystander = presence_tracker(), world.users[BYSTANDER]
    expected: list[dict[str, Any]] = []

    async def transition(change: Callable[[int], None]) -> None:
        change(bystander.pk)  # a sign-in or out: the in-memory store never blocks the loop
        state = tracker.states([bystander.pk])[bystander.pk]
        now = Ctx(dataclasses.replace(world, presence={**world.presence, BYSTANDER: state}), viewer)
        presence = {"online": state.online, "lastSeenAt": as_graphql_datetime(state.last_seen)}
        expected.append({"data": {"presence": {**presence, "user": now.user(BYSTANDER)}}})
        await until_delivered(sink, len(expected))

    async def run() -> None:
        engine = get_engine(schema)
        subscriber = await subscribe(engine, sink, LIVE_PRESENCE, None, world.users.get(viewer))
        if subscriber is None:
            return
        try:
            await transition(tracker.logged_out)
            await transition(tracker.logged_in)
        finally:
            engine.end(subscriber)

    async_to_sync(run)()
    if refused_as_anonymous(sink, viewer):
        return
    assert [item["data"]["presence"]["online"] for item in expected] == [False, True]
    assert sink.payloads == expected
    assert_nothing_private_leaks({"payloads": sink.payloads}, c, ())


def test_a_viewers_own_presence_shows_them_their_address(world: World) -> None:
    """The bystander, subscribed, gets their own transition with their e-mail address
    (as ``me`` shows it) and the author's without the author's."""
    sink = RecordingSink()
    tracker, bystander, author = presence_tracker(), world.users[BYSTANDER], world.users[AUTHOR]

    async def run() -> None:
        engine = get_engine(schema)
        subscriber = await subscribe(engine, sink, LIVE_PRESENCE, None, bystander)
        assert subscriber is not None
        try:
            for user in (bystander, author):
                tracker.logged_out(user.pk)
                await until_delivered(sink, len(sink.payloads) + 1)
                tracker.logged_in(user.pk)
                await until_delivered(sink, len(sink.payloads) + 1)
        finally:
            engine.end(subscriber)

    async_to_sync(run)()
    users = [item["data"]["presence"]["user"] for item in sink.payloads]
    assert [u["username"] for u in users] == [BYSTANDER, BYSTANDER, AUTHOR, AUTHOR]
    assert [u["email"] for u in users] == [bystander.email, bystander.email, None, None]
    assert bystander.email


def test_staff_and_superuser_are_not_owners(world: World) -> None:
    """The table's premise: staff and superuser hold the flags and own nothing."""
    for name in (STAFF, SUPERUSER):
        user = world.users[name]
        assert user.is_staff
        assert not Event.objects.filter(actor=user).exists()
    assert world.users[SUPERUSER].is_superuser


# The viewer's own address shows in these (``other`` and ``staff`` look themselves up).
NAMES_THE_VIEWER = {
    "me",
    "users",
    "activities",
    "user: other (signed out)",
    "user: staff (never seen)",
}
# Each viewer's own inbox: staff and superuser are held to exactly their own by the
# table instead (staff has none, the superuser one MENTION, ``other`` two).
INBOX_ROWS = {row.name for row in NOTIFICATION_QUERIES}


@pytest.mark.parametrize(
    "row", [r for r in QUERIES if r.name not in NAMES_THE_VIEWER | INBOX_ROWS], ids=row_id
)
def test_staff_and_superuser_see_exactly_what_another_user_sees(
    client: Client, world: World, row: Row
) -> None:
    """Byte for byte, for every query whose answer does not name the viewer itself."""

    def answer(viewer: str) -> dict[str, Any]:
        return gql(client, row.document, row.variables(Ctx(world, viewer)), world.tokens[viewer])

    seen_by_another_user = answer(OTHER)
    assert answer(STAFF) == seen_by_another_user
    assert answer(SUPERUSER) == seen_by_another_user
