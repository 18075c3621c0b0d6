from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import TestCase

from events.models import Activity, ActivityKind, Verb, Visibility
from users.models import Profile

pytestmark = pytest.mark.django_db


def test_created_user_has_profile_and_user_joined_activity(
    make_user: Callable[..., User], published: list[int], django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        user = make_user("carol")

    assert Profile.objects.get(user=user).bio == ""
    activity = Activity.objects.get(actor=user)
    assert (activity.kind, activity.verb, activity.visibility) == (
        ActivityKind.USER_JOINED,
        Verb.CREATED,
        Visibility.PUBLIC,
    )
    assert activity.message == "carol joined"
    assert activity.event_pk is None
    assert published == [activity.pk]


def test_saving_an_existing_user_builds_nothing_more(
    make_user: Callable[..., User], published: list[int], django_capture_on_commit_callbacks
) -> None:
    user = make_user("dave")
    with django_capture_on_commit_callbacks(execute=True):
        user.first_name = "Dave"
        user.save()
    assert Profile.objects.filter(user=user).count() == 1
    assert Activity.objects.filter(actor=user).count() == 1
    assert published == []


def test_loaddata_builds_no_profile_and_publishes_nothing(
    published: list[int], django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        call_command("loaddata", "tests/fixtures/users_and_events.json", verbosity=0)

    assert User.objects.filter(username="fixture-user").exists()
    assert not Profile.objects.filter(user__username="fixture-user").exists()
    assert Activity.objects.count() == 0
    assert callbacks == []
    assert published == []


class TestUserCreationRollsBackTogether(TestCase):
    def test_profile_is_written_in_the_users_transaction(self) -> None:
        from django.db import transaction

        with self.captureOnCommitCallbacks(execute=False) as callbacks:
            try:
                with transaction.atomic():
                    User.objects.create_user("erin", "erin@example.com", "pw-long-enough-1")
                    raise RuntimeError("abort")
            except RuntimeError:
                pass
        assert not User.objects.filter(username="erin").exists()
        assert Profile.objects.count() == 0
        assert Activity.objects.count() == 0
        assert callbacks == []
