"""Tokens are random, stored hashed, expire and are revoked; passwords are validated."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from tests.helpers import PASSWORD, error_codes, gql
from users.models import ApiToken
from users.tokens import TOKEN_PREFIX, token_issue, token_user

pytestmark = pytest.mark.django_db

ME = "{ me { username } }"
CREATE_USER = "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }"


def test_tokens_are_random_and_stored_only_as_digests(alice: User) -> None:
    tokens = {token_issue(user=alice) for _ in range(20)}
    assert len(tokens) == 20
    for token in tokens:
        assert token.startswith(TOKEN_PREFIX)
        assert len(token) - len(TOKEN_PREFIX) >= 43  # 32 random bytes, URL-safe base64
    stored = set(ApiToken.objects.values_list("digest", flat=True))
    assert stored == {hashlib.sha256(token.encode()).hexdigest() for token in tokens}
    assert not stored & tokens


def test_an_expired_token_is_unauthenticated(client: Client, alice: User) -> None:
    token = token_issue(user=alice)
    assert gql(client, ME, token=token)["data"]["me"] == {"username": "alice"}
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert token_user(token=token) is None
    assert error_codes(gql(client, ME, token=token)) == ["UNAUTHENTICATED"]


def test_tokens_expire_after_the_configured_lifetime(alice: User, settings: Settings) -> None:
    settings.PULSE_TOKEN_TTL_SECONDS = 3600
    before = timezone.now()
    token_issue(user=alice)
    expires_at = ApiToken.objects.get().expires_at
    assert timedelta(seconds=3599) <= expires_at - before <= timedelta(seconds=3601)


def test_a_deactivated_users_token_stops_working(alice: User) -> None:
    token = token_issue(user=alice)
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert token_user(token=token) is None


def test_logout_revokes_only_the_token_in_use(client: Client, alice: User) -> None:
    phone, laptop = token_issue(user=alice), token_issue(user=alice)
    assert gql(client, "mutation { logout }", token=phone)["data"] == {"logout": True}
    assert error_codes(gql(client, ME, token=phone)) == ["UNAUTHENTICATED"]
    assert gql(client, ME, token=laptop)["data"]["me"] == {"username": "alice"}


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1!", "This password is too short. It must contain at least 8 characters."),
        ("password123", "This password is too common."),
        ("83920174615", "This password is entirely numeric."),
        ("mallory-the-user", "The password is too similar to the username."),
    ],
)
def test_passwords_go_through_djangos_validators(
    client: Client, password: str, message: str
) -> None:
    fields = {"username": "mallory-the-user", "email": "m@example.com", "password": password}
    body = gql(client, CREATE_USER, {"i": fields})
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert message in body["errors"][0]["extensions"]["fields"]["password"]
    assert not User.objects.exists()


def test_a_good_password_is_accepted_and_hashed(client: Client) -> None:
    fields = {"username": "mallory", "email": "m@example.com", "password": PASSWORD}
    assert "errors" not in gql(client, CREATE_USER, {"i": fields})
    user = User.objects.get()
    assert user.password != PASSWORD and user.check_password(PASSWORD)
