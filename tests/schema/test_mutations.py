"""Every mutation: success, and each documented error code."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from events.models import Activity, Comment, StatusChange, Verb, Visibility
from tests.helpers import PASSWORD, error_codes, gql
from users.models import ApiToken

pytestmark = pytest.mark.django_db

CREATE_USER = """
mutation($input: CreateUserInput!) {
  createUser(input: $input) { id username email profile { website bio } }
}"""
LOGIN = """
mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token user { id email } } }
"""
CREATE_STATUS = """
mutation($input: CreateStatusChangeInput!) {
  createStatusChange(input: $input) { id status visibility actor { username } }
}"""
UPDATE_STATUS = (
    "mutation($id: ID!, $s: String!) { updateStatusChange(id: $id, status: $s) { id status } }"
)
CREATE_COMMENT = """
mutation($input: CreateCommentInput!) {
  createComment(input: $input) { id body target { id } }
}"""
UPDATE_COMMENT = "mutation($id: ID!, $b: String!) { updateComment(id: $id, body: $b) { id body } }"
DELETE_EVENT = "mutation($id: ID!) { deleteEvent(id: $id) }"
UPDATE_PROFILE = "mutation($input: ProfileInput!) { updateProfile(input: $input) { website bio } }"


def create_status(client: Client, token: str, status: str = "hi", **extra: str) -> str:
    body = gql(client, CREATE_STATUS, {"input": {"status": status, **extra}}, token)
    return str(body["data"]["createStatusChange"]["id"])


class TestCreateUser:
    def test_success_returns_own_email_and_builds_profile(self, client: Client) -> None:
        body = gql(
            client,
            CREATE_USER,
            {"input": {"username": "zoe", "email": "zoe@example.com", "password": PASSWORD}},
        )
        user = body["data"]["createUser"]
        assert user["username"] == "zoe"
        assert user["email"] == "zoe@example.com"
        assert user["profile"] == {"website": "", "bio": ""}
        assert User.objects.get(username="zoe").check_password(PASSWORD)

    @pytest.mark.parametrize(
        ("fields", "bad_field"),
        [
            ({"username": "ok", "email": "not-an-email", "password": PASSWORD}, "email"),
            ({"username": "ok", "email": "", "password": PASSWORD}, "email"),
            ({"username": "ok", "email": "ok@example.com", "password": ""}, "password"),
            ({"username": "ok", "email": "ok@example.com", "password": "123"}, "password"),
            (
                {"username": "bad name!", "email": "ok@example.com", "password": PASSWORD},
                "username",
            ),
            ({"username": "", "email": "ok@example.com", "password": PASSWORD}, "username"),
        ],
    )
    def test_invalid_input_is_bad_user_input_and_writes_nothing(
        self, client: Client, fields: dict[str, str], bad_field: str
    ) -> None:
        body = gql(client, CREATE_USER, {"input": fields})
        assert body["data"] is None
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert bad_field in body["errors"][0]["extensions"]["fields"]
        assert not User.objects.exists()
        assert not Activity.objects.exists()


class TestLogin:
    def test_success_returns_working_token_and_session(self, client: Client, alice: User) -> None:
        body = gql(client, LOGIN, {"u": "alice", "p": PASSWORD})
        payload = body["data"]["login"]
        assert payload["user"]["email"] == "alice@example.com"
        assert ApiToken.objects.filter(user=alice).count() == 1
        assert not ApiToken.objects.filter(digest=payload["token"]).exists()  # stored hashed
        me = gql(Client(), "{ me { username } }", token=payload["token"])
        assert me["data"]["me"] == {"username": "alice"}
        assert gql(client, "{ me { username } }")["data"]["me"] == {"username": "alice"}

    @pytest.mark.parametrize(("username", "password"), [("alice", "wrong"), ("nobody", PASSWORD)])
    def test_wrong_password_and_unknown_user_look_the_same(
        self, client: Client, alice: User, username: str, password: str
    ) -> None:
        body = gql(client, LOGIN, {"u": username, "p": password})
        assert error_codes(body) == ["UNAUTHENTICATED"]
        assert body["errors"][0]["message"] == "Invalid username or password."


class TestLogout:
    def test_revokes_the_token_in_use(self, client: Client, alice_token: str) -> None:
        assert gql(client, "mutation { logout }", token=alice_token)["data"] == {"logout": True}
        body = gql(client, "{ me { username } }", token=alice_token)
        assert error_codes(body) == ["UNAUTHENTICATED"]

    def test_needs_sign_in(self, client: Client) -> None:
        assert error_codes(gql(client, "mutation { logout }")) == ["UNAUTHENTICATED"]


class TestUpdateProfile:
    def test_success(self, client: Client, alice: User, alice_token: str) -> None:
        body = gql(
            client,
            UPDATE_PROFILE,
            {"input": {"website": "https://alice.example", "bio": "hello"}},
            alice_token,
        )
        assert body["data"]["updateProfile"] == {"website": "https://alice.example", "bio": "hello"}
        alice.profile.refresh_from_db()
        assert alice.profile.bio == "hello"

    def test_bad_url_and_long_bio(self, client: Client, alice: User, alice_token: str) -> None:
        body = gql(
            client, UPDATE_PROFILE, {"input": {"website": "nope", "bio": "x" * 5000}}, alice_token
        )
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert set(body["errors"][0]["extensions"]["fields"]) == {"website", "bio"}
        alice.profile.refresh_from_db()
        assert alice.profile.website == ""

    def test_needs_sign_in(self, client: Client) -> None:
        assert error_codes(gql(client, UPDATE_PROFILE, {"input": {"bio": "x"}})) == [
            "UNAUTHENTICATED"
        ]


class TestStatusChanges:
    def test_create_and_update(self, client: Client, alice_token: str) -> None:
        body = gql(client, CREATE_STATUS, {"input": {"status": "shipping v2"}}, alice_token)
        created = body["data"]["createStatusChange"]
        assert created["status"] == "shipping v2"
        assert created["visibility"] == "PUBLIC"
        assert created["actor"] == {"username": "alice"}
        body = gql(client, UPDATE_STATUS, {"id": created["id"], "s": "shipped"}, alice_token)
        assert body["data"]["updateStatusChange"] == {"id": created["id"], "status": "shipped"}
        verbs = list(Activity.objects.filter(kind="STATUS_CHANGE").values_list("verb", flat=True))
        assert verbs == [Verb.CREATED, Verb.UPDATED]

    def test_create_private(self, client: Client, alice_token: str) -> None:
        create_status(client, alice_token, "secret", visibility="PRIVATE")
        assert StatusChange.objects.get().visibility == Visibility.PRIVATE

    @pytest.mark.parametrize("status", ["", "x" * 281])
    def test_invalid_status(self, client: Client, alice_token: str, status: str) -> None:
        body = gql(client, CREATE_STATUS, {"input": {"status": status}}, alice_token)
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert list(body["errors"][0]["extensions"]["fields"]) == ["status"]
        assert not StatusChange.objects.exists()
        assert not Activity.objects.filter(kind="STATUS_CHANGE").exists()

    def test_create_needs_sign_in(self, client: Client) -> None:
        body = gql(client, CREATE_STATUS, {"input": {"status": "x"}})
        assert error_codes(body) == ["UNAUTHENTICATED"]

    def test_bad_token_is_unauthenticated(self, client: Client) -> None:
        body = gql(client, CREATE_STATUS, {"input": {"status": "x"}}, token="pulse_forged")
        assert error_codes(body) == ["UNAUTHENTICATED"]

    def test_update_by_someone_else_is_forbidden(
        self, client: Client, alice_token: str, bob_token: str
    ) -> None:
        event_id = create_status(client, alice_token)
        body = gql(client, UPDATE_STATUS, {"id": event_id, "s": "hacked"}, bob_token)
        assert error_codes(body) == ["FORBIDDEN"]
        assert StatusChange.objects.get().status == "hi"

    def test_update_of_someone_elses_private_event_is_not_found(
        self, client: Client, alice_token: str, bob_token: str
    ) -> None:
        event_id = create_status(client, alice_token, visibility="PRIVATE")
        body = gql(client, UPDATE_STATUS, {"id": event_id, "s": "x"}, bob_token)
        assert error_codes(body) == ["NOT_FOUND"]

    @pytest.mark.parametrize("event_id", ["garbage", "U3RhdHVzQ2hhbmdlOjk5OTk=", ""])
    def test_update_unknown_or_malformed_id_is_not_found(
        self, client: Client, alice_token: str, event_id: str
    ) -> None:
        body = gql(client, UPDATE_STATUS, {"id": event_id, "s": "x"}, alice_token)
        assert error_codes(body) == ["NOT_FOUND"]

    def test_update_invalid_status(self, client: Client, alice_token: str) -> None:
        event_id = create_status(client, alice_token)
        body = gql(client, UPDATE_STATUS, {"id": event_id, "s": ""}, alice_token)
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert StatusChange.objects.get().status == "hi"


class TestComments:
    def test_create_on_target_and_update(
        self, client: Client, alice_token: str, bob_token: str
    ) -> None:
        target_id = create_status(client, alice_token)
        body = gql(
            client, CREATE_COMMENT, {"input": {"body": "nice", "targetId": target_id}}, bob_token
        )
        comment = body["data"]["createComment"]
        assert comment["body"] == "nice"
        assert comment["target"] == {"id": target_id}
        body = gql(client, UPDATE_COMMENT, {"id": comment["id"], "b": "nicer"}, bob_token)
        assert body["data"]["updateComment"] == {"id": comment["id"], "body": "nicer"}

    def test_target_must_be_visible(self, client: Client, alice_token: str, bob_token: str) -> None:
        target_id = create_status(client, alice_token, visibility="PRIVATE")
        body = gql(
            client, CREATE_COMMENT, {"input": {"body": "x", "targetId": target_id}}, bob_token
        )
        assert error_codes(body) == ["NOT_FOUND"]
        assert not Comment.objects.exists()

    def test_invalid_body(self, client: Client, alice_token: str) -> None:
        body = gql(client, CREATE_COMMENT, {"input": {"body": "x" * 5001}}, alice_token)
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert list(body["errors"][0]["extensions"]["fields"]) == ["body"]

    def test_update_by_someone_else_is_forbidden(
        self, client: Client, alice_token: str, bob_token: str
    ) -> None:
        body = gql(client, CREATE_COMMENT, {"input": {"body": "mine"}}, alice_token)
        comment_id = body["data"]["createComment"]["id"]
        body = gql(client, UPDATE_COMMENT, {"id": comment_id, "b": "theirs"}, bob_token)
        assert error_codes(body) == ["FORBIDDEN"]

    def test_update_comment_with_status_change_id_is_not_found(
        self, client: Client, alice_token: str
    ) -> None:
        event_id = create_status(client, alice_token)
        body = gql(client, UPDATE_COMMENT, {"id": event_id, "b": "x"}, alice_token)
        assert error_codes(body) == ["NOT_FOUND"]

    def test_create_needs_sign_in(self, client: Client) -> None:
        body = gql(client, CREATE_COMMENT, {"input": {"body": "x"}})
        assert error_codes(body) == ["UNAUTHENTICATED"]


class TestDeleteEvent:
    def test_success_keeps_comments_with_null_target(
        self, client: Client, alice_token: str, bob_token: str
    ) -> None:
        target_id = create_status(client, alice_token)
        body = gql(
            client, CREATE_COMMENT, {"input": {"body": "x", "targetId": target_id}}, bob_token
        )
        comment_id = body["data"]["createComment"]["id"]
        assert gql(client, DELETE_EVENT, {"id": target_id}, alice_token)["data"] == {
            "deleteEvent": True
        }
        body = gql(
            client,
            "query($id: ID!) { event(id: $id) { ... on Comment { target { id } } } }",
            {"id": comment_id},
        )
        assert body["data"]["event"] == {"target": None}
        deleted = Activity.objects.get(verb=Verb.DELETED)
        assert deleted.kind == "STATUS_CHANGE"

    def test_by_someone_else_is_forbidden(
        self, client: Client, alice_token: str, bob_token: str
    ) -> None:
        event_id = create_status(client, alice_token)
        assert error_codes(gql(client, DELETE_EVENT, {"id": event_id}, bob_token)) == ["FORBIDDEN"]
        assert StatusChange.objects.exists()

    def test_unknown_is_not_found(self, client: Client, alice_token: str) -> None:
        assert error_codes(gql(client, DELETE_EVENT, {"id": "nope"}, alice_token)) == ["NOT_FOUND"]

    def test_needs_sign_in(self, client: Client, alice_token: str) -> None:
        event_id = create_status(client, alice_token)
        assert error_codes(gql(client, DELETE_EVENT, {"id": event_id})) == ["UNAUTHENTICATED"]
