"""The events admin: every kind of event, edits that publish, and a read-only log."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from events.cursors import encode_activity_cursor
from events.models import (
    Activity,
    ActivityKind,
    Comment,
    Event,
    StatusChange,
    Verb,
    Visibility,
)

pytestmark = pytest.mark.django_db

STATUS_CHANGES = "/admin/events/statuschange/"
COMMENTS = "/admin/events/comment/"
ACTIVITIES = "/admin/events/activity/"


def concrete_event_models() -> list[type[Event]]:
    found, pending = [], list(Event.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if not model._meta.abstract and not model._meta.proxy:
            found.append(model)
    return found


def test_every_kind_of_event_has_an_admin() -> None:
    models = concrete_event_models()
    assert {StatusChange, Comment} <= set(models)
    assert [m for m in models if not admin.site.is_registered(m)] == []


@pytest.fixture
def stream(alice: User, bob: User) -> dict[str, Event]:
    """A public status, a private status and a reply to the first, in the log."""
    status = StatusChange.objects.create(actor=alice, status="shipping v2")
    secret = StatusChange.objects.create(
        actor=alice, status="interviewing", visibility=Visibility.PRIVATE
    )
    reply = Comment.objects.create(actor=bob, body="congrats on the launch", target=status)
    return {"status": status, "secret": secret, "reply": reply}


@pytest.mark.parametrize(
    ("url", "expected_rows"), [(STATUS_CHANGES, 2), (COMMENTS, 1), (ACTIVITIES, 6)]
)
def test_changelists_render(
    admin_client: Client, stream: dict[str, Event], url: str, expected_rows: int
) -> None:
    # Activities: alice, bob and the admin joined; two statuses and a comment.
    response = admin_client.get(url)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == expected_rows


@pytest.mark.parametrize(("url", "name"), [(STATUS_CHANGES, "status"), (COMMENTS, "reply")])
def test_event_change_pages_render(
    admin_client: Client, stream: dict[str, Event], url: str, name: str
) -> None:
    response = admin_client.get(f"{url}{stream[name].pk}/change/")
    assert response.status_code == 200
    assert 'name="_save"' in response.content.decode()


def test_comment_changelist_links_the_target_as_its_own_kind(
    admin_client: Client, stream: dict[str, Event]
) -> None:
    content = admin_client.get(COMMENTS).content.decode()
    assert f'href="{STATUS_CHANGES}{stream["status"].pk}/change/"' in content
    assert f"StatusChange #{stream['status'].pk}" in content


@pytest.mark.parametrize(
    ("url", "query", "expected"),
    [
        (STATUS_CHANGES, {"q": "shipping"}, ["alice changed status to 'shipping v2'"]),
        (
            STATUS_CHANGES,
            {"visibility__exact": "PRIVATE"},
            ["alice changed status to 'interviewing'"],
        ),
        (COMMENTS, {"q": "bob"}, ["bob commented 'congrats on the launch'"]),
        (COMMENTS, {"q": "shipping"}, []),
        (ACTIVITIES, {"q": "congrats"}, ["bob commented 'congrats on the launch'"]),
        (ACTIVITIES, {"kind__exact": "COMMENT"}, ["bob commented 'congrats on the launch'"]),
        (ACTIVITIES, {"verb__exact": "UPDATED"}, []),
    ],
)
def test_search_and_filters(
    admin_client: Client,
    stream: dict[str, Event],
    url: str,
    query: dict[str, str],
    expected: list[str],
) -> None:
    response = admin_client.get(url, query)
    assert response.status_code == 200
    rows = response.context["cl"].result_list
    messages = [
        row.message if isinstance(row, Activity) else row.activity_message(Verb.CREATED)
        for row in rows
    ]
    assert messages == expected


def test_activity_search_finds_a_cursor(admin_client: Client, stream: dict[str, Event]) -> None:
    activity = Activity.objects.get(kind=ActivityKind.COMMENT)
    response = admin_client.get(ACTIVITIES, {"q": encode_activity_cursor(activity.pk)})
    assert list(response.context["cl"].result_list) == [activity]
    assert encode_activity_cursor(activity.pk) in response.content.decode()


def test_editing_an_event_in_the_admin_publishes_updated(
    admin_client: Client,
    stream: dict[str, Event],
    alice: User,
    published: list[int],
    django_capture_on_commit_callbacks,
) -> None:
    status = stream["status"]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"{STATUS_CHANGES}{status.pk}/change/",
            {"actor": alice.pk, "visibility": "PUBLIC", "status": "shipped", "_save": "Save"},
        )
    assert response.status_code == 302
    latest = Activity.objects.latest("id")
    assert (latest.kind, latest.verb, latest.message, latest.event_pk) == (
        ActivityKind.STATUS_CHANGE,
        Verb.UPDATED,
        "alice edited status to 'shipped'",
        status.pk,
    )
    assert published == [latest.pk]


def test_adding_a_comment_in_the_admin_publishes_created(
    admin_client: Client,
    stream: dict[str, Event],
    bob: User,
    published: list[int],
    django_capture_on_commit_callbacks,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"{COMMENTS}add/",
            {
                "actor": bob.pk,
                "visibility": "PRIVATE",
                "body": "note to self",
                "target": stream["status"].pk,
                "_save": "Save",
            },
        )
    assert response.status_code == 302
    comment = Comment.objects.get(body="note to self")
    assert comment.target_id == stream["status"].pk
    latest = Activity.objects.latest("id")
    assert (latest.verb, latest.visibility, latest.event_pk) == (
        Verb.CREATED,
        Visibility.PRIVATE,
        comment.pk,
    )
    assert published == [latest.pk]


def test_bulk_delete_in_the_admin_publishes_deleted_for_each(
    admin_client: Client,
    stream: dict[str, Event],
    published: list[int],
    django_capture_on_commit_callbacks,
) -> None:
    pks = [stream["status"].pk, stream["secret"].pk]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            STATUS_CHANGES,
            {"action": "delete_selected", "_selected_action": pks, "post": "yes"},
        )
    assert response.status_code == 302
    deleted = Activity.objects.filter(verb=Verb.DELETED).order_by("id")
    assert {a.event_pk for a in deleted} == set(pks)
    assert published == [a.pk for a in deleted]
    reply = Comment.objects.get(pk=stream["reply"].pk)
    assert reply.target_id is None  # comments stay, untargeted


def test_activity_change_page_is_read_only(admin_client: Client, stream: dict[str, Event]) -> None:
    activity = Activity.objects.get(kind=ActivityKind.COMMENT)
    response = admin_client.get(f"{ACTIVITIES}{activity.pk}/change/")
    assert response.status_code == 200
    content = response.content.decode()
    assert encode_activity_cursor(activity.pk) in content
    assert "congrats on the launch" in content
    assert 'name="_save"' not in content
    assert "<textarea" not in content and 'name="message"' not in content
    assert f"{ACTIVITIES}{activity.pk}/delete/" not in content


def test_activity_admin_refuses_add_change_and_delete(
    admin_client: Client, stream: dict[str, Event]
) -> None:
    activity = Activity.objects.get(kind=ActivityKind.COMMENT)
    changelist = admin_client.get(ACTIVITIES).content.decode()
    assert f"{ACTIVITIES}add/" not in changelist
    assert "delete_selected" not in changelist

    assert admin_client.get(f"{ACTIVITIES}add/").status_code == 403
    assert admin_client.post(f"{ACTIVITIES}add/", {"message": "forged"}).status_code == 403
    change = admin_client.post(
        f"{ACTIVITIES}{activity.pk}/change/", {"message": "rewritten", "_save": "Save"}
    )
    assert change.status_code == 403
    assert (
        admin_client.post(f"{ACTIVITIES}{activity.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    bulk = admin_client.post(
        ACTIVITIES, {"action": "delete_selected", "_selected_action": [activity.pk], "post": "yes"}
    )
    assert bulk.status_code in (200, 302)  # Django answers "no action selected"
    activity.refresh_from_db()
    assert activity.message == "bob commented 'congrats on the launch'"
    assert Activity.objects.count() == 6


@pytest.mark.parametrize("url", [STATUS_CHANGES, COMMENTS, ACTIVITIES])
def test_event_changelists_queries_do_not_grow_with_rows(
    admin_client: Client, make_user: Callable[..., User], url: str
) -> None:
    def add_rows(count: int) -> None:
        for _ in range(count):
            actor = make_user()
            status = StatusChange.objects.create(actor=actor, status="hello")
            Comment.objects.create(actor=actor, body="hi", target=status)

    def queries_for_changelist() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url).status_code == 200
        return len(queries)

    add_rows(2)
    queries_for_changelist()  # warm-up: session, content types
    few = queries_for_changelist()
    add_rows(20)
    assert queries_for_changelist() == few


def test_actor_autocomplete_searches_users(admin_client: Client, alice: User, bob: User) -> None:
    response = admin_client.get(
        "/admin/autocomplete/",
        {"app_label": "events", "model_name": "statuschange", "field_name": "actor", "term": "ali"},
    )
    assert response.status_code == 200
    assert [row["text"] for row in response.json()["results"]] == ["alice"]


NOTIFICATIONS = "/admin/events/notification/"


def test_the_admin_lists_notifications_read_only(
    admin_client: Client, stream: dict[str, Event]
) -> None:
    from events.models import Notification

    response = admin_client.get(NOTIFICATIONS)
    assert response.status_code == 200
    rows = response.context["cl"].result_list
    assert [(n.recipient.username, n.kind) for n in rows] == [("alice", "COMMENT")]
    assert "congrats on the launch" in response.content.decode()
    notification = Notification.objects.get()
    change = admin_client.get(f"{NOTIFICATIONS}{notification.pk}/change/")
    assert change.status_code == 200 and b'name="read"' not in change.content
    assert admin_client.get(f"{NOTIFICATIONS}add/").status_code == 403
    deleted = admin_client.post(f"{NOTIFICATIONS}{notification.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 403 and Notification.objects.count() == 1
