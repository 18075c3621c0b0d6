"""Cached user stats: filled on read, invalidated by the events' receivers after commit."""

from __future__ import annotations

from collections.abc import Callable
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks

from events import services
from events.models import Visibility
from events.stats import INVALIDATED, UserStats, stats_for, stats_key
from tests.helpers import gql

pytestmark = pytest.mark.django_db

STATS = "query($id: ID!) { user(id: $id) { stats { statusCount commentCount lastPostedAt } } }"
POST = "mutation($s: String!, $v: Visibility) { createStatusChange(input: {status: $s, visibility: $v}) { id } }"


def user_id(user: User) -> str:
    from schema.ids import encode_global_id

    return encode_global_id("User", user.pk)


def test_stats_count_public_events_only(alice: User) -> None:
    services.status_change_create(actor=alice, status="one", visibility=Visibility.PUBLIC)
    services.status_change_create(actor=alice, status="two", visibility=Visibility.PRIVATE)
    status = services.status_change_create(
        actor=alice, status="three", visibility=Visibility.PUBLIC
    )
    services.comment_create(actor=alice, body="hi", target=status, visibility=Visibility.PUBLIC)
    stats = stats_for([alice.pk])[alice.pk]
    assert (stats.status_count, stats.comment_count) == (2, 1)
    assert stats.last_posted_at is not None


def test_a_read_right_after_a_writes_response_is_never_stale(
    client: Client,
    alice: User,
    alice_token: str,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    before = gql(client, STATS, {"id": user_id(alice)})["data"]["user"]["stats"]
    assert before == {"statusCount": 0, "commentCount": 0, "lastPostedAt": None}
    with django_capture_on_commit_callbacks(execute=True):
        assert "errors" not in gql(client, POST, {"s": "new"}, alice_token)
    after = gql(client, STATS, {"id": user_id(alice)})["data"]["user"]["stats"]
    assert after["statusCount"] == 1 and after["lastPostedAt"] is not None


def test_a_hit_makes_no_database_query(
    alice: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    services.status_change_create(actor=alice, status="one", visibility=Visibility.PUBLIC)
    filled = stats_for([alice.pk])
    with django_assert_num_queries(0):
        assert stats_for([alice.pk]) == filled


def test_many_users_take_one_cache_round_trip_and_one_query_for_the_misses(
    client: Client,
    make_user: Callable[..., User],
    django_assert_max_num_queries: DjangoAssertNumQueries,
) -> None:
    users = [make_user() for _ in range(30)]
    services.status_change_create(actor=users[0], status="one", visibility=Visibility.PUBLIC)
    stats_for([users[1].pk])  # one warm entry among misses
    plain = "{ users(first: 100) { edges { node { username } } } }"
    with_stats = "{ users(first: 100) { edges { node { username stats { statusCount } } } } }"
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as without:
        gql(client, plain)
    with (
        mock.patch.object(cache, "get_many", wraps=cache.get_many) as get_many,
        CaptureQueriesContext(connection) as counted,
    ):
        body = gql(client, with_stats)
    assert "errors" not in body, body
    counts = [edge["node"]["stats"]["statusCount"] for edge in body["data"]["users"]["edges"]]
    assert sorted(counts) == [0] * (len(counts) - 1) + [1]
    assert get_many.call_count == 1  # one round trip for all (one MGET on Redis)
    assert len(counted.captured_queries) - len(without.captured_queries) <= 1  # the misses
    with (
        mock.patch.object(cache, "get_many", wraps=cache.get_many) as warm,
        CaptureQueriesContext(connection) as again,
    ):
        gql(client, with_stats)
    assert warm.call_count == 1
    assert len(again.captured_queries) == len(without.captured_queries)  # all hits


def test_a_rolled_back_write_invalidates_nothing(alice: User) -> None:
    filled = stats_for([alice.pk])
    with pytest.raises(RuntimeError), transaction.atomic():
        services.status_change_create(actor=alice, status="undone", visibility=Visibility.PUBLIC)
        raise RuntimeError("roll back")
    assert cache.get(stats_key(alice.pk)) == {
        "status_count": 0,
        "comment_count": 0,
        "last_posted_at": None,
    }
    assert stats_for([alice.pk]) == filled == {alice.pk: UserStats()}


def test_a_read_racing_a_write_cannot_store_stats_from_before_it(
    alice: User, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    """The invalidation leaves a marker; a read that computed before the commit only
    ``add``s, so it cannot overwrite the marker with what it read."""
    stale = stats_for([alice.pk])[alice.pk]  # computed before the write
    cache.delete(stats_key(alice.pk))
    with django_capture_on_commit_callbacks(execute=True):
        services.status_change_create(actor=alice, status="new", visibility=Visibility.PUBLIC)
    assert cache.get(stats_key(alice.pk)) == INVALIDATED
    assert cache.add(stats_key(alice.pk), stale.__dict__) is False  # the racing fill
    assert stats_for([alice.pk])[alice.pk].status_count == 1
