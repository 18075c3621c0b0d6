"""Authorization matrix: every query and mutation, as every kind of viewer.

Each row of ``QUERIES`` and ``MUTATIONS`` is one operation with the outcome expected
for an anonymous caller, for a signed-in stranger (another user, a staff user and a
superuser: none of them owns anything here, so all three must get exactly what another
user gets) and for the owner of the events (the author). Every answer is also scanned
as a whole: private texts, private event ids and other users' e-mail addresses must
never appear in it, wherever a ``User`` or an ``Event`` is nested.

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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from events.models import Activity, Comment, Event, StatusChange, Visibility
from schema.ids import encode_global_id
from tests.helpers import PASSWORD, error_codes, gql, strings_in
from users.models import Profile
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
PRIVATE_STATUS = "author SECRET-STATUS v1"
PRIVATE_STATUS_EDITED = "author SECRET-STATUS v2"
PRIVATE_COMMENT = "author SECRET-COMMENT"
DELETED_PRIVATE_STATUS = "author SECRET-DELETED"
BYSTANDER_STATUS = "bystander SECRET-BYSTANDER"
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
    "public_status": EventSpec("StatusChange", AUTHOR, "PUBLIC", "author open status"),
    "private_status": EventSpec("StatusChange", AUTHOR, "PRIVATE", PRIVATE_STATUS_EDITED),
    "public_comment": EventSpec(
        "Comment", AUTHOR, "PUBLIC", "author open comment", target="private_status"
    ),
    "private_comment": EventSpec(
        "Comment", AUTHOR, "PRIVATE", PRIVATE_COMMENT, target="public_status"
    ),
    "bystander_status": EventSpec("StatusChange", BYSTANDER, "PRIVATE", BYSTANDER_STATUS),
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
        "author changed status to 'author open status'",
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
    Step(AUTHOR, "COMMENT", "CREATED", "author commented 'author open comment'", "public_comment"),
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
        "author changed status to 'author open, deleted'",
        "deleted_public",
    ),
    Step(AUTHOR, "STATUS_CHANGE", "DELETED", "author deleted a status", "deleted_public"),
)


@dataclass
class World:
    """The users, their tokens and the global ids of the events of the setup."""

    users: dict[str, User]
    tokens: dict[str, str]
    ids: dict[str, str]  # event key -> global id (also of the deleted events)
    private_ids: dict[str, set[str]]  # owner -> global ids of their private events


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
    }
    private_status.status = PRIVATE_STATUS_EDITED
    private_status.save()
    ids = {key: encode_global_id(type(event).__name__, event.pk) for key, event in saved.items()}
    ids["deleted_private"] = _create_and_delete_status(
        author, DELETED_PRIVATE_STATUS, Visibility.PRIVATE
    )
    ids["deleted_public"] = _create_and_delete_status(
        author, "author open, deleted", Visibility.PUBLIC
    )
    private_ids = {
        AUTHOR: {ids["private_status"], ids["private_comment"], ids["deleted_private"]},
        BYSTANDER: {ids["bystander_status"]},
    }
    tokens = {name: token_issue(user=user) for name, user in users.items()}
    return World(users=users, tokens=tokens, ids=ids, private_ids=private_ids)


@pytest.fixture
def world(db: None) -> Iterator[World]:
    cache.clear()  # login throttling counts live in the cache: start from none
    yield build_world()
    cache.clear()


# What a viewer should get: the oracle the table rows are written with ---------------


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
        """A ``User { username email }``: the address only for the user themself."""
        return {"username": name, "email": email_of(name) if name == self.viewer else None}

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

    def history(self) -> list[dict[str, Any]]:
        """The activities this viewer may see: public ones, and private ones of its own."""
        return [
            {
                "kind": step.kind,
                "verb": step.verb,
                "message": step.message,
                "eventId": self.gid(step.event) if step.event else None,
                "actor": self.user(step.actor),
                "event": (
                    self.event(step.event)
                    if step.event in EVENTS and step.verb != "DELETED"
                    else None
                ),
            }
            for step in HISTORY
            if not step.private or step.actor == self.viewer
        ]


def assert_nothing_private_leaks(body: dict[str, Any], c: Ctx, echoes: tuple[str, ...]) -> None:
    """No private text, private event id or e-mail address of anyone but the viewer.

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
  __typename id visibility actor { username email }
  ... on StatusChange { status }
  ... on Comment {
    body
    target {
      __typename id visibility actor { username email }
      ... on StatusChange { status }
      ... on Comment { body }
    }
  }"""
ME = "{ me { username email } }"
USER = "query($id: ID!) { user(id: $id) { username email } }"
USERS = "{ users(first: 50) { totalCount edges { node { username email } } } }"
EVENT = "query($id: ID!) { event(id: $id) {" + EVENT_FIELDS + "} }"
EVENTS_QUERY = (
    "query($first: Int, $kind: EventKind, $actorId: ID) {"
    " events(first: $first, kind: $kind, actorId: $actorId) {"
    " totalCount edges { node {" + EVENT_FIELDS + "} } } }"
)
ACTIVITIES = (
    "{ activities(first: 100) { kind verb message eventId actor { username email }"
    " event {" + EVENT_FIELDS + "} } }"
)

OWN_EVENTS = ("private_comment", "public_comment", "private_status", "public_status")
PUBLIC_EVENTS = ("public_comment", "public_status")


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
    events_row(("public_status",), ("private_status", "public_status"), kind="STATUS_CHANGE"),
    events_row(("public_comment",), ("private_comment", "public_comment"), kind="COMMENT"),
    events_row(PUBLIC_EVENTS, OWN_EVENTS, actor=AUTHOR),
    events_row(("public_comment",), ("private_comment", "public_comment"), 1, "COMMENT", AUTHOR),
    events_row((), (), actor=BYSTANDER),
    Row(
        "activities",
        ACTIVITIES,
        lambda c: {},
        **everyone(ok(lambda c: {"activities": c.history()})),
        reveals=("SECRET-STATUS", "SECRET-COMMENT", "SECRET-DELETED", email_of(AUTHOR)),
    ),
)


CREATE_USER = "mutation($input: CreateUserInput!) { createUser(input: $input) { username email } }"
LOGIN = """
mutation($u: String!, $p: String!) {
  login(username: $u, password: $p) { token user { username email } }
}"""
LOGOUT = "mutation { logout }"
UPDATE_PROFILE = 'mutation { updateProfile(input: {bio: "new bio"}) { website bio } }'
CREATE_STATUS = """
mutation($v: Visibility) {
  createStatusChange(input: {status: "fresh status", visibility: $v}) {
    __typename visibility actor { username email } status
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
    __typename visibility actor { username email } body
    target {
      __typename id visibility actor { username email }
      ... on StatusChange { status }
      ... on Comment { body }
    }
  }
}"""
DELETE_EVENT = "mutation($id: ID!) { deleteEvent(id: $id) }"


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
    if spec.owner != AUTHOR:  # the bystander's private event: nobody here may know of it
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


MUTATIONS: tuple[Row, ...] = (
    Row(
        "createUser: fresh username and e-mail",
        CREATE_USER,
        new_account(fresh_email),
        **everyone(
            ok(lambda c: {"createUser": {"username": f"new-{c.viewer}", "email": fresh_email(c)}})
        ),
    ),
    # Another user's address is accepted like a fresh one: nothing says it is in use.
    Row(
        "createUser: another user's e-mail",
        CREATE_USER,
        new_account(bystanders_email),
        **everyone(
            ok(
                lambda c: {
                    "createUser": {"username": f"new-{c.viewer}", "email": email_of(BYSTANDER)}
                }
            )
        ),
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
    )


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


def row_id(row: Row) -> str:
    return row.name


@pytest.mark.parametrize("viewer", VIEWERS)
@pytest.mark.parametrize("row", QUERIES, ids=row_id)
def test_query(client: Client, world: World, row: Row, viewer: str) -> None:
    check_row(client, world, row, viewer)


@pytest.mark.parametrize("viewer", VIEWERS)
@pytest.mark.parametrize("row", MUTATIONS, ids=row_id)
def test_mutation(client: Client, world: World, row: Row, viewer: str) -> None:
    before = snapshot()
    check_row(client, world, row, viewer)
    if row.outcome(viewer).code is not None:
        assert snapshot() == before, "a refused mutation wrote something"


def test_staff_and_superuser_are_not_owners(world: World) -> None:
    """The table's premise: staff and superuser hold the flags and own nothing."""
    for name in (STAFF, SUPERUSER):
        user = world.users[name]
        assert user.is_staff
        assert not Event.objects.filter(actor=user).exists()
    assert world.users[SUPERUSER].is_superuser


NAMES_THE_VIEWER = {"me", "users", "activities"}  # the viewer's own address shows in these


@pytest.mark.parametrize("row", [r for r in QUERIES if r.name not in NAMES_THE_VIEWER], ids=row_id)
def test_staff_and_superuser_see_exactly_what_another_user_sees(
    client: Client, world: World, row: Row
) -> None:
    """Byte for byte, for every query whose answer does not name the viewer itself."""

    def answer(viewer: str) -> dict[str, Any]:
        return gql(client, row.document, row.variables(Ctx(world, viewer)), world.tokens[viewer])

    seen_by_another_user = answer(OTHER)
    assert answer(STAFF) == seen_by_another_user
    assert answer(SUPERUSER) == seen_by_another_user
