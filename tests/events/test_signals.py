from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection, models, transaction
from django.db.models.signals import post_delete, post_save
from django.test.utils import isolate_apps

from events.models import Activity, ActivityKind, Comment, Event, StatusChange, Verb, Visibility

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", [StatusChange, Comment])
def test_every_concrete_event_subclass_is_connected(model: type[Event]) -> None:
    assert post_save.has_listeners(model)
    assert post_delete.has_listeners(model)


def test_status_change_create_update_delete_publish_in_order(
    alice: User, published: list[int], django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        status = StatusChange.objects.create(actor=alice, status="shipping v2")
    with django_capture_on_commit_callbacks(execute=True):
        status.status = "shipped"
        status.save()
    event_pk = status.pk
    with django_capture_on_commit_callbacks(execute=True):
        status.delete()

    activities = list(Activity.objects.filter(kind=ActivityKind.STATUS_CHANGE))
    assert [(a.verb, a.message, a.event_pk) for a in activities] == [
        (Verb.CREATED, "alice changed status to 'shipping v2'", event_pk),
        (Verb.UPDATED, "alice edited status to 'shipped'", event_pk),
        (Verb.DELETED, "alice deleted a status", event_pk),
    ]
    assert published == [a.pk for a in activities]


def test_private_event_activities_stay_private(alice: User) -> None:
    comment = Comment.objects.create(actor=alice, body="secret", visibility=Visibility.PRIVATE)
    comment.body = "still secret"
    comment.save()
    comment.delete()
    visibilities = set(
        Activity.objects.filter(kind=ActivityKind.COMMENT).values_list("visibility", flat=True)
    )
    assert visibilities == {Visibility.PRIVATE}


def test_rolled_back_write_publishes_nothing(
    alice: User, published: list[int], django_capture_on_commit_callbacks
) -> None:
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        StatusChange.objects.create(actor=alice, status="never happened")
        raise RuntimeError("roll back")
    assert callbacks == []
    assert published == []
    assert not StatusChange.objects.exists()
    assert not Activity.objects.filter(kind=ActivityKind.STATUS_CHANGE).exists()


def test_deleting_an_event_keeps_comments_on_it(alice: User, bob: User) -> None:
    status = StatusChange.objects.create(actor=alice, status="hello")
    reply = Comment.objects.create(actor=bob, body="hi!", target=status)
    status.delete()
    reply.refresh_from_db()
    assert reply.target is None


def test_deleting_a_user_does_not_log_deletions_of_their_events(alice: User) -> None:
    StatusChange.objects.create(actor=alice, status="bye")
    alice.delete()
    assert not Activity.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_event_subclass_defined_later_publishes_without_wiring(alice: User) -> None:
    with isolate_apps("events"):

        class Poll(Event):
            activity_kind = "POLL"
            question = models.CharField(max_length=100)

            class Meta:
                app_label = "events"

            def activity_message(self, verb: str) -> str:
                return f"{self.actor.username} asked {self.question!r}"

        with connection.schema_editor() as editor:
            editor.create_model(Poll)
        try:
            poll = Poll.objects.create(actor=alice, question="tea or coffee?")
            activity = Activity.objects.get(kind="POLL")
            assert (activity.verb, activity.event_pk, activity.message) == (
                Verb.CREATED,
                poll.pk,
                "alice asked 'tea or coffee?'",
            )
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(Poll)


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["Ping me when it's deployed.", 'say "hi"', "plain"])
def test_activity_messages_quote_every_text_the_same_way(alice: User, text: str) -> None:
    from events import services

    services.status_change_create(actor=alice, status=text, visibility=Visibility.PUBLIC)
    services.comment_create(actor=alice, body=text, target=None, visibility=Visibility.PUBLIC)
    messages = list(Activity.objects.order_by("-id").values_list("message", flat=True)[:2])
    assert messages == [f"alice commented '{text}'", f"alice changed status to '{text}'"]
