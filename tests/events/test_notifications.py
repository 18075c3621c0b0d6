"""Notifications written by the events' receivers: who, when, in one statement."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from pytest_django import DjangoCaptureOnCommitCallbacks

from events import notifications, services
from events.mentions import mentioned_names, mentioned_user_ids
from events.models import Notification, NotificationKind, Visibility

pytestmark = pytest.mark.django_db

PUBLIC, PRIVATE = Visibility.PUBLIC, Visibility.PRIVATE


def inbox(user: User) -> list[tuple[str, int]]:
    return [
        (n.kind, n.event_pk) for n in Notification.objects.filter(recipient=user).order_by("id")
    ]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("hi @bob", ["bob"]),
        ("thanks @bob.", ["bob"]),
        ("(@bob), @ann! @bob's @Cy?", ["bob", "ann", "Cy"]),
        ("@bob-", ["bob"]),
        ("@jo.smith: look", ["jo.smith"]),
        ("mail ann@example.com", []),
        ("@@bob and x@bob", []),
        ("@ alone, @.", []),
        ("@Bob @bob @BOB", ["Bob"]),
        ("multi\n@line_1\t@line-2", ["line_1", "line-2"]),
    ],
)
def test_the_mention_rule(text: str, names: list[str]) -> None:
    assert mentioned_names(text) == names


def test_mentions_match_case_insensitively_preferring_the_exact_spelling(
    make_user: Callable[..., User],
) -> None:
    bob, big_bob, ann = make_user("bob"), make_user("Bob"), make_user("Ann")
    assert mentioned_user_ids("@bob @ANN") == {bob.pk, ann.pk}
    assert mentioned_user_ids("@Bob") == {big_bob.pk}
    assert mentioned_user_ids("@BOB") == set()  # two accounts, neither spelled so
    make_user("gone", is_active=False)
    assert mentioned_user_ids("@gone") == set()


def test_a_comment_notifies_its_targets_author_and_mentions(
    make_user: Callable[..., User],
) -> None:
    alice, bob, cy = make_user("alice"), make_user("bob"), make_user("cy")
    status = services.status_change_create(actor=alice, status="hi @bob", visibility=PUBLIC)
    assert inbox(bob) == [(NotificationKind.MENTION, status.pk)]
    comment = services.comment_create(
        actor=bob, body="@cy look, and @bob myself, @alice", target=status, visibility=PUBLIC
    )
    # alice gets one notification for the write (COMMENT), bob none of his own
    assert inbox(alice) == [(NotificationKind.COMMENT, comment.pk)]
    assert inbox(cy) == [(NotificationKind.MENTION, comment.pk)]
    assert inbox(bob) == [(NotificationKind.MENTION, status.pk)]
    own = services.comment_create(actor=alice, body="me", target=status, visibility=PUBLIC)
    assert (NotificationKind.COMMENT, own.pk) not in inbox(alice)


def test_private_events_notify_nobody(make_user: Callable[..., User]) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    status = services.status_change_create(actor=alice, status="hi", visibility=PUBLIC)
    services.status_change_create(actor=alice, status="psst @bob", visibility=PRIVATE)
    services.comment_create(actor=bob, body="@alice", target=status, visibility=PRIVATE)
    assert Notification.objects.count() == 0


def test_an_edit_notifies_only_the_newly_mentioned(make_user: Callable[..., User]) -> None:
    alice, bob, cy = make_user("alice"), make_user("bob"), make_user("cy")
    status = services.status_change_create(actor=alice, status="@bob", visibility=PUBLIC)
    services.status_change_update(actor=alice, status_change=status, status="@bob and @cy")
    services.status_change_update(actor=alice, status_change=status, status="@cy and @bob!")
    assert inbox(bob) == [(NotificationKind.MENTION, status.pk)]
    assert inbox(cy) == [(NotificationKind.MENTION, status.pk)]


def test_deleting_an_event_removes_its_notifications_and_says_whose_count_changed(
    make_user: Callable[..., User],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[dict[str, object]] = []
    monkeypatch.setattr(notifications, "group_publish", lambda group, message: sent.append(message))
    alice, bob = make_user("alice"), make_user("bob")
    keep = services.status_change_create(actor=alice, status="@bob one", visibility=PUBLIC)
    with django_capture_on_commit_callbacks(execute=True):
        doomed = services.status_change_create(actor=alice, status="@bob two", visibility=PUBLIC)
    assert sent[-1]["id"] == Notification.objects.get(event_pk=doomed.pk).pk
    with django_capture_on_commit_callbacks(execute=True):
        services.event_delete(actor=alice, event=doomed)
    assert inbox(bob) == [(NotificationKind.MENTION, keep.pk)]
    assert sent[-1]["recipients"] == [bob.pk]


def test_a_rolled_back_write_notifies_no_one(
    make_user: Callable[..., User],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.status_change_create(actor=alice, status="@bob", visibility=PUBLIC)
        raise RuntimeError("roll back")
    assert inbox(bob) == [] and callbacks == []


def test_loaddata_notifies_no_one() -> None:
    call_command("loaddata", "tests/fixtures/mentions.json", verbosity=0)
    assert Notification.objects.count() == 0


@override_settings(PULSE_MAX_MENTIONS=100)
def test_a_comment_mentioning_fifty_people_writes_them_in_one_statement(
    make_user: Callable[..., User],
) -> None:
    alice = make_user("alice")
    people = [make_user(f"p{n}") for n in range(50)]
    body = " ".join(f"@{p.username}" for p in people)
    with CaptureQueriesContext(connection) as queries:
        services.comment_create(actor=alice, body=body, target=None, visibility=PUBLIC)
    inserts = [q["sql"] for q in queries if 'INSERT INTO "events_notification"' in q["sql"]]
    assert len(inserts) == 1
    assert Notification.objects.filter(kind=NotificationKind.MENTION).count() == 50


def test_mark_read_touches_only_the_callers_own(make_user: Callable[..., User]) -> None:
    alice, bob, cy = make_user("alice"), make_user("bob"), make_user("cy")
    for n in range(3):
        services.status_change_create(actor=alice, status=f"@bob @cy {n}", visibility=PUBLIC)
    bobs = list(Notification.objects.filter(recipient=bob).order_by("id"))
    cys = list(Notification.objects.filter(recipient=cy).order_by("id"))
    # cy's ids given by bob change nothing of cy's
    assert notifications.notifications_mark_read(recipient_id=bob.pk, ids=[cys[0].pk]) == 3
    assert notifications.notifications_mark_read(recipient_id=bob.pk, ids=[bobs[1].pk]) == 2
    assert notifications.notifications_mark_read(recipient_id=bob.pk, up_to_id=bobs[0].pk) == 1
    assert notifications.notifications_mark_read(recipient_id=bob.pk) == 0
    assert notifications.unread_count(recipient_id=cy.pk) == 3


def test_the_log_read_gives_new_notifications_then_counts_of_the_changed(
    make_user: Callable[..., User],
) -> None:
    alice, bob, cy = make_user("alice"), make_user("bob"), make_user("cy")
    services.status_change_create(actor=alice, status="@bob", visibility=PUBLIC)
    start = notifications.latest_notification_id()
    services.status_change_create(actor=alice, status="@bob again", visibility=PUBLIC)
    entries = notifications.notification_log_after(
        after_id=start, limit=10, changed={bob.pk, cy.pk}
    )
    assert [(e.recipient_id, e.unread_count, e.notification is None) for e in entries] == [
        (bob.pk, 2, False),
        (cy.pk, 0, True),  # count only: bob's is carried by his new notification
    ]
    assert entries[1].position == -1
