"""``seed_demo`` and ``tail_activity``, run in this process (real processes: test_tail_activity_live)."""

from __future__ import annotations

import io
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import OperationalError

from events import selectors
from events.cursors import encode_activity_cursor
from events.management.commands import tail_activity
from events.models import Activity, ActivityKind, Comment, Event, StatusChange, Visibility
from events.visibility import can_see


def run(command: str, *args: str) -> tuple[str, str]:
    """Run a management command in this process; its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# seed_demo


def seeded_content() -> dict[str, list[Any]]:
    """What seed_demo wrote, without ids or times (which differ from run to run)."""
    users = User.objects.order_by("id").select_related("profile")
    events = list(Event.objects.select_subclasses().select_related("actor").order_by("id"))
    position = {event.pk: index for index, event in enumerate(events)}  # targets, by order

    def text(event: Event) -> str:
        return event.status if isinstance(event, StatusChange) else cast(Comment, event).body

    return {
        "users": [(u.username, u.email, u.profile.bio, u.profile.website) for u in users],
        "events": [
            (
                type(e).__name__,
                e.actor.username,
                e.visibility,
                text(e),
                position[e.target_id] if isinstance(e, Comment) and e.target_id else None,
            )
            for e in events
        ],
        "activities": list(Activity.objects.order_by("id").values_list("kind", "verb", "message")),
    }


def delete_everyone() -> None:
    for user in User.objects.all():
        user.delete()  # one by one: events then go with their author, unlogged


@pytest.mark.django_db
def test_seed_demo_creates_the_requested_users_and_events_through_the_signals(
    published: list[int], django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        out, _ = run("seed_demo", "--users", "3", "--events", "12", "--seed", "7")

    users = list(User.objects.select_related("profile").order_by("id"))
    assert len(users) == 3
    assert all(u.profile.bio and u.check_password("pulse-live-demo") for u in users)
    assert StatusChange.objects.count() + Comment.objects.count() == 12
    activities = list(Activity.objects.order_by("id"))
    assert [a.kind for a in activities[:3]] == [ActivityKind.USER_JOINED] * 3
    assert {a.kind for a in activities[3:]} <= {ActivityKind.STATUS_CHANGE, ActivityKind.COMMENT}
    assert len(activities) == 15
    assert published == [a.pk for a in activities]
    assert "15 activities logged and " in out and "(seed 7)" in out
    assert out.rstrip().endswith("demo password: pulse-live-demo")


@pytest.mark.django_db
def test_seed_demo_writes_private_events_and_replies_each_author_may_see() -> None:
    run("seed_demo", "--users", "4", "--events", "40", "--seed", "3")
    assert set(Event.objects.values_list("visibility", flat=True)) == {
        Visibility.PUBLIC,
        Visibility.PRIVATE,
    }
    replies = list(Comment.objects.filter(target__isnull=False).select_related("target"))
    assert replies != []
    assert [r.pk for r in replies if r.target is None or not can_see(r.actor_id, r.target)] == []


@pytest.mark.django_db
def test_seed_demo_fills_the_inboxes_with_mentions_and_replies() -> None:
    from events.models import Notification, NotificationKind

    out, _ = run("seed_demo", "--users", "5", "--events", "40", "--seed", "3")
    kinds = set(Notification.objects.values_list("kind", flat=True))
    assert kinds == {NotificationKind.MENTION, NotificationKind.COMMENT}
    assert f"{Notification.objects.count()} notifications written" in out


@pytest.mark.django_db
def test_seed_demo_is_deterministic_with_a_seed() -> None:
    run("seed_demo", "--users", "4", "--events", "15", "--seed", "42")
    first = seeded_content()
    delete_everyone()
    run("seed_demo", "--users", "4", "--events", "15", "--seed", "42")
    assert seeded_content() == first
    delete_everyone()
    run("seed_demo", "--users", "4", "--events", "15", "--seed", "43")
    assert seeded_content() != first


@pytest.mark.django_db
def test_seed_demo_runs_again_without_username_clashes() -> None:
    import random

    from users.demo import FIRST_NAMES, demo_username

    pair = demo_username(random.Random(5), set(FIRST_NAMES))
    assert pair.split(".")[0] in FIRST_NAMES and "." in pair  # first names used up
    run("seed_demo", "--users", "3", "--events", "0", "--seed", "1")
    out, _ = run("seed_demo", "--users", "3", "--events", "2", "--seed", "1")
    usernames = sorted(User.objects.values_list("username", flat=True))
    assert len(usernames) == len(set(usernames)) == 6
    # no near-twins (peggy, peggy2): no name is another's with something added
    assert [(a, b) for a in usernames for b in usernames if a != b and b.startswith(a)] == []
    assert "Created 3 users" in out


@pytest.mark.django_db
def test_seed_demo_without_new_users_writes_as_existing_ones(alice: User) -> None:
    run("seed_demo", "--users", "0", "--events", "3", "--seed", "1")
    assert set(Event.objects.values_list("actor__username", flat=True)) == {"alice"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "0", "--events", "1"], "no users to write events as"),
        (["--users", "1", "--password", "12345678"], "entirely numeric"),
        (["--users", "-1"], "must be 0 or more"),
    ],
)
def test_seed_demo_refuses_what_it_cannot_do(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("seed_demo", *args)
    assert not User.objects.exists()


# tail_activity, in process


@pytest.fixture
def log(alice: User, bob: User) -> list[Activity]:
    """Joins, a public status, a private comment and a public reply, in log order."""
    status = StatusChange.objects.create(actor=alice, status="shipping v2")
    Comment.objects.create(actor=alice, body="note to self", visibility=Visibility.PRIVATE)
    Comment.objects.create(actor=bob, body="congrats", target=status)
    return list(Activity.objects.order_by("id"))


@pytest.fixture
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A poll that would wait is Ctrl-C instead: a following tail never hangs a test."""

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(tail_activity.time, "sleep", interrupt)


def line(activity: Activity) -> str:
    return "\t".join(
        [
            encode_activity_cursor(activity.pk),
            activity.occurred_at.isoformat(timespec="seconds"),
            activity.kind,
            activity.verb,
            activity.actor.username,
            activity.message,
        ]
    )


def public(log: list[Activity]) -> list[Activity]:
    return [a for a in log if a.visibility == Visibility.PUBLIC]


@pytest.mark.django_db
def test_tail_once_prints_public_activity_and_the_last_cursor(log: list[Activity]) -> None:
    out, err = run("tail_activity", "--once")
    assert out.splitlines() == [line(a) for a in public(log)]
    assert err.splitlines() == [f"last cursor: {encode_activity_cursor(log[-1].pk)}"]


@pytest.mark.django_db
def test_tail_include_private_prints_the_whole_log(log: list[Activity]) -> None:
    out, _ = run("tail_activity", "--once", "--include-private")
    assert out.splitlines() == [line(a) for a in log]
    assert "alice commented 'note to self'" in out


@pytest.mark.django_db
def test_tail_after_a_cursor_resumes_after_it(log: list[Activity]) -> None:
    out, _ = run("tail_activity", "--once", "--after", encode_activity_cursor(log[2].pk))
    assert out.splitlines() == [line(a) for a in public(log[3:])]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "kinds", "actors"),
    [
        (["--kind", "COMMENT"], {"COMMENT"}, {"bob"}),
        (["--kind", "COMMENT", "--kind", "USER_JOINED"], {"COMMENT", "USER_JOINED"}, None),
        (["--user", "alice"], {"USER_JOINED", "STATUS_CHANGE"}, {"alice"}),
        (
            ["--user", "alice", "--include-private"],
            {"USER_JOINED", "STATUS_CHANGE", "COMMENT"},
            {"alice"},
        ),
    ],
)
def test_tail_filters_by_kind_and_user(
    log: list[Activity], args: list[str], kinds: set[str], actors: set[str] | None
) -> None:
    out, _ = run("tail_activity", "--once", *args)
    expected = [
        a
        for a in (log if "--include-private" in args else public(log))
        if a.kind in kinds and (actors is None or a.actor.username in actors)
    ]
    assert out.splitlines() == [line(a) for a in expected]


@pytest.mark.django_db
def test_tail_limit_stops_after_that_many_lines(log: list[Activity], no_waiting: None) -> None:
    out, err = run("tail_activity", "--limit", "2", "--batch", "1")
    assert out.splitlines() == [line(a) for a in log[:2]]
    assert err.splitlines()[-1] == f"last cursor: {encode_activity_cursor(log[1].pk)}"


@pytest.mark.django_db
def test_tail_follows_new_activity_and_ctrl_c_prints_the_resume_cursor(
    log: list[Activity], alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    polls: list[float] = []

    def write_then_interrupt(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 1:
            StatusChange.objects.create(actor=alice, status="written while tailing")
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(tail_activity.time, "sleep", write_then_interrupt)
    out, err = run("tail_activity", "--new", "--interval", "0.25")
    new = Activity.objects.latest("id")
    assert out.splitlines() == [line(new)]
    assert polls == [0.25, 0.25]
    assert err.splitlines() == [
        f"Following the activity log after {encode_activity_cursor(log[-1].pk)}",
        f"last cursor: {encode_activity_cursor(new.pk)}",
    ]


@pytest.mark.django_db
def test_tail_retries_when_the_database_is_unavailable(
    log: list[Activity], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = selectors.activities_after
    failures = iter([OperationalError("database is locked")])

    def flaky(**kwargs: Any) -> Any:
        for error in failures:
            raise error
        return real(**kwargs)

    monkeypatch.setattr(selectors, "activities_after", flaky)
    monkeypatch.setattr(tail_activity.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(
        tail_activity, "connection", type("Conn", (), {"close": lambda self: None})()
    )
    out, err = run("tail_activity", "--once")
    assert out.splitlines() == [line(a) for a in public(log)]
    assert "Database unavailable (database is locked); retrying in 2.0 s" in err


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--after", "not-a-cursor"], "'not-a-cursor' is not an activity cursor"),
        (["--after", "YWN0aXZpdHk6eA=="], "is not an activity cursor"),  # "activity:x"
        (["--user", "nobody"], "No user named 'nobody'"),
        (["--kind", "LIKED"], "invalid choice: 'LIKED'"),
        (["--interval", "0"], "must be above 0"),
        (["--after", "YWN0aXZpdHk6MQ==", "--new"], "not allowed with argument"),
    ],
)
def test_tail_refuses_bad_options_clearly(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("tail_activity", "--once", *args)
