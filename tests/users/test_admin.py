"""The users admin: Django's user pages plus the profile, without N+1 queries."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from events.models import Activity, ActivityKind
from tests.helpers import PASSWORD
from users.models import Profile
from users.services import profile_update

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/auth/user/"


def test_user_changelist_shows_each_users_website(
    admin_client: Client, alice: User, bob: User
) -> None:
    profile_update(user=alice, website="https://alice.example.com", bio=None)
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert response.context["cl"].result_count == 3  # alice, bob and the admin
    assert "https://alice.example.com" in response.content.decode()


def test_user_change_page_has_the_profile_inline(admin_client: Client, alice: User) -> None:
    profile_update(user=alice, website=None, bio="Climbs on weekends.")
    response = admin_client.get(f"{CHANGELIST}{alice.pk}/change/")
    assert response.status_code == 200
    assert 'name="profile-0-bio"' in response.content.decode()
    assert "Climbs on weekends." in response.content.decode()


def test_editing_the_profile_inline_saves_it(admin_client: Client, alice: User) -> None:
    profile = alice.profile
    response = admin_client.post(
        f"{CHANGELIST}{alice.pk}/change/",
        {
            "username": "alice",
            "email": "alice@example.com",
            "is_active": "on",
            "date_joined_0": "2025-01-02",
            "date_joined_1": "03:04:05",
            "profile-TOTAL_FORMS": "1",
            "profile-INITIAL_FORMS": "1",
            "profile-MIN_NUM_FORMS": "0",
            "profile-MAX_NUM_FORMS": "1",
            "profile-0-id": str(profile.pk),
            "profile-0-user": str(alice.pk),
            "profile-0-website": "https://alice.example.com",
            "profile-0-bio": "Edited in the admin",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.context and response.context["errors"]
    profile.refresh_from_db()
    assert (profile.website, profile.bio) == ("https://alice.example.com", "Edited in the admin")


def test_adding_a_user_builds_one_profile_through_the_receiver(admin_client: Client) -> None:
    add_page = admin_client.get(f"{CHANGELIST}add/")
    assert add_page.status_code == 200
    assert "profile-TOTAL_FORMS" not in add_page.content.decode()  # no second profile

    response = admin_client.post(
        f"{CHANGELIST}add/",
        {
            "username": "carol",
            "usable_password": "true",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    carol = User.objects.get(username="carol")
    assert Profile.objects.filter(user=carol).count() == 1
    joined = Activity.objects.filter(actor=carol).values_list("kind", "message")
    assert list(joined) == [(ActivityKind.USER_JOINED, "carol joined")]


@pytest.mark.parametrize(
    ("term", "expected"),
    [("ali", ["alice"]), ("bob@example", ["bob"]), ("sourdough", ["bob"])],
)
def test_user_search_by_username_email_and_bio(
    admin_client: Client, alice: User, bob: User, term: str, expected: list[str]
) -> None:
    profile_update(user=bob, website=None, bio="Bakes sourdough.")
    response = admin_client.get(CHANGELIST, {"q": term})
    assert response.status_code == 200
    assert [user.username for user in response.context["cl"].result_list] == expected


def test_user_changelist_queries_do_not_grow_with_rows(
    admin_client: Client, make_user: Callable[..., User]
) -> None:
    def queries_for_changelist() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(CHANGELIST).status_code == 200
        return len(queries)

    make_user()
    queries_for_changelist()  # warm-up: session, content types
    few = queries_for_changelist()
    for _ in range(20):
        make_user()
    assert queries_for_changelist() == few
