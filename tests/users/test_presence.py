"""Presence (``users.presence``): in memory and on a real redis-server.

Published transitions are captured by replacing ``users.presence.group_publish`` (the
channel layer is not under test here). A "process" is one :class:`PresenceTracker`:
on Redis each has its own client, in memory they share one store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_out
from django.test import Client, override_settings

from schema.auth import SocketsPerUser
from tests.e2e.servers import RedisServer, redis_server
from tests.helpers import PASSWORD
from users import presence
from users.presence import (
    PRESENCE_GROUP,
    PRESENCE_MESSAGE_TYPE,
    MemoryPresenceStore,
    PresenceState,
    PresenceStore,
    PresenceTracker,
    RedisPresenceStore,
    presence_tracker,
    reset_presence_tracker,
)

SHORT_TIMEOUT = 1  # seconds: the refresher runs every third of it


async def eventually(check: Callable[[], object], timeout: float = 5, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.02)


class CountingConnection(redis.Connection):
    """Counts round trips: each request (a command or a whole pipeline) is one send."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


# Fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("presence-redis")) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_global_tracker() -> Iterator[None]:
    reset_presence_tracker()
    yield
    reset_presence_tracker()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The transitions published, in order."""
    messages: list[dict[str, Any]] = []

    def record(group: str, message: dict[str, Any]) -> None:
        assert group == PRESENCE_GROUP
        messages.append(message)

    monkeypatch.setattr(presence, "group_publish", record)
    return messages


def transitions(messages: list[dict[str, Any]]) -> list[tuple[int, bool]]:
    for message in messages:
        assert message["type"] == PRESENCE_MESSAGE_TYPE
        assert isinstance(message["last_seen"], float)
    return [(m["user_id"], m["online"]) for m in messages]


StoreFactory = Callable[..., PresenceStore]


def _redis_store_factory(url: str) -> StoreFactory:
    with redis.Redis.from_url(url) as client:
        client.flushall()

    def make(timeout: float | None = None, **pool_options: Any) -> PresenceStore:
        timeout = timeout or settings.PULSE_PRESENCE_TIMEOUT_SECONDS
        return RedisPresenceStore.from_url(url, float(timeout), **pool_options)

    return make


@pytest.fixture(params=["memory", "redis"])
def new_store(request: pytest.FixtureRequest) -> StoreFactory:
    """Makes the store of one more process (timeout from the settings of then)."""
    if request.param == "redis":
        return _redis_store_factory(request.getfixturevalue("redis_srv").url)
    shared: dict[float, MemoryPresenceStore] = {}

    def make(timeout: float | None = None) -> PresenceStore:
        timeout = float(timeout or settings.PULSE_PRESENCE_TIMEOUT_SECONDS)
        return shared.setdefault(timeout, MemoryPresenceStore(timeout))

    return make


@pytest.fixture
def redis_store(redis_srv: RedisServer) -> StoreFactory:
    return _redis_store_factory(redis_srv.url)


@pytest.fixture
async def make_tracker() -> AsyncIterator[Callable[[PresenceStore], PresenceTracker]]:
    """Trackers closed (their tasks finished) at the end of the test."""
    made: list[PresenceTracker] = []

    def make(store: PresenceStore) -> PresenceTracker:
        made.append(PresenceTracker(store))
        return made[-1]

    yield make
    for tracker in made:
        tasks = list(tracker._tasks)
        await tracker.aclose()
        assert all(task.done() for task in tasks)


def online(tracker: PresenceTracker, *user_ids: int) -> list[bool]:
    states = tracker.states(list(user_ids))
    return [states[user_id].online for user_id in user_ids]


# Login and logout ----------------------------------------------------------------------


def test_login_makes_a_user_online_with_one_transition(
    new_store: StoreFactory, make_tracker: Callable[[PresenceStore], PresenceTracker], sent: list
) -> None:
    tracker = make_tracker(new_store())
    assert tracker.states([7]) == {7: PresenceState(online=False, last_seen=None)}

    before = time.time()
    tracker.logged_in(7)
    tracker.logged_in(7)  # already online: no transition

    state = tracker.states([7])[7]
    assert state.online and state.last_seen is not None
    assert before - 1 < state.last_seen < time.time() + 1
    assert transitions(sent) == [(7, True)]

    tracker.logged_out(7)
    state = tracker.states([7])[7]
    assert not state.online and state.last_seen is not None
    assert transitions(sent) == [(7, True), (7, False)]


async def test_logout_keeps_a_user_with_a_live_connection_online(
    new_store: StoreFactory, make_tracker: Callable[[PresenceStore], PresenceTracker], sent: list
) -> None:
    tracker = make_tracker(new_store())
    tracker.connection_opened(7)
    await tracker.flush()
    await asyncio.to_thread(tracker.logged_in, 7)  # from a request's thread
    await asyncio.to_thread(tracker.logged_out, 7)
    assert online(tracker, 7) == [True]
    assert transitions(sent) == [(7, True)]

    tracker.connection_closed(7)
    await tracker.flush()
    assert online(tracker, 7) == [False]
    assert transitions(sent) == [(7, True), (7, False)]


async def test_a_login_alone_lasts_the_timeout(
    new_store: StoreFactory, make_tracker: Callable[[PresenceStore], PresenceTracker], sent: list
) -> None:
    with override_settings(PULSE_PRESENCE_TIMEOUT_SECONDS=SHORT_TIMEOUT):
        tracker = make_tracker(new_store())
    await asyncio.to_thread(tracker.logged_in, 7)
    tracker.connection_opened(8)  # someone's live connection: the refresher runs
    await tracker.flush()
    assert online(tracker, 7, 8) == [True, True]

    await eventually(lambda: (7, False) in transitions(sent), what="login expiry swept")
    assert online(tracker, 7, 8) == [False, True]
    await asyncio.sleep(2 * tracker.period)
    assert transitions(sent) == [(7, True), (8, True), (7, False)]


def test_receivers_follow_django_sign_in_and_sign_out(alice: User, client: Client) -> None:
    with override_settings(REDIS_URL=""):
        reset_presence_tracker()
        tracker = presence_tracker()
    assert online(tracker, alice.pk) == [False]

    assert client.login(username="alice", password=PASSWORD)
    assert online(tracker, alice.pk) == [True]
    client.logout()
    assert online(tracker, alice.pk) == [False]
    user_logged_out.send(sender=User, request=None, user=None)  # nobody was signed in


def test_counted_sockets_are_reported_to_presence() -> None:
    with override_settings(REDIS_URL="", PULSE_MAX_SOCKETS_PER_USER=2):
        reset_presence_tracker()
        tracker = presence_tracker()
        sockets = SocketsPerUser()
        assert sockets.claim(7) and sockets.claim(7)
        assert not sockets.claim(7)  # at the cap: not counted anywhere
        assert online(tracker, 7) == [True]
        sockets.release(7)
        assert online(tracker, 7) == [True]
        sockets.release(7)
        assert online(tracker, 7) == [False]
        assert not tracker._connections


def test_presence_tracker_follows_the_settings_at_creation(redis_srv: RedisServer) -> None:
    with override_settings(REDIS_URL=redis_srv.url, PULSE_PRESENCE_TIMEOUT_SECONDS=5):
        reset_presence_tracker()
        tracker = presence_tracker()
        assert presence_tracker() is tracker
    assert isinstance(tracker.store, RedisPresenceStore)
    assert tracker.timeout == 5 and tracker.period == pytest.approx(5 / 3)
    with override_settings(REDIS_URL=""):
        reset_presence_tracker()
        assert isinstance(presence_tracker().store, MemoryPresenceStore)
        assert presence_tracker().timeout == 60


# Several processes ---------------------------------------------------------------------


async def test_two_processes_make_one_transition_each_way(
    new_store: StoreFactory, make_tracker: Callable[[PresenceStore], PresenceTracker], sent: list
) -> None:
    first, second = make_tracker(new_store()), make_tracker(new_store())
    assert first.process_id != second.process_id
    first.connection_opened(7)
    second.connection_opened(7)
    await asyncio.gather(first.flush(), second.flush())
    assert transitions(sent) == [(7, True)]

    first.connection_closed(7)
    await first.flush()
    assert online(first, 7) == online(second, 7) == [True]
    assert transitions(sent) == [(7, True)]

    second.connection_closed(7)
    await second.flush()
    assert online(first, 7) == [False]
    assert transitions(sent) == [(7, True), (7, False)]


async def test_a_killed_process_users_go_offline_by_themselves(
    new_store: StoreFactory, make_tracker: Callable[[PresenceStore], PresenceTracker], sent: list
) -> None:
    with override_settings(PULSE_PRESENCE_TIMEOUT_SECONDS=SHORT_TIMEOUT):
        doomed, survivor = make_tracker(new_store()), make_tracker(new_store())
    doomed.connection_opened(7)
    doomed.connection_opened(8)
    survivor.connection_opened(8)
    await asyncio.gather(doomed.flush(), survivor.flush())
    await asyncio.sleep(2 * SHORT_TIMEOUT)  # the refreshers keep everyone online
    assert online(survivor, 7, 8) == [True, True]
    assert sorted(transitions(sent)) == [(7, True), (8, True)]

    doomed.close()  # as SIGKILL: nothing written, its refresher and worker stop

    await eventually(lambda: (7, False) in transitions(sent), what="7 swept offline")
    assert online(survivor, 7, 8) == [False, True]
    await asyncio.sleep(2 * SHORT_TIMEOUT)
    assert sorted(transitions(sent)[:2]) == [(7, True), (8, True)]
    assert transitions(sent)[2:] == [(7, False)]


async def test_reconnecting_before_the_sweep_publishes_both_transitions(
    new_store: StoreFactory, make_tracker: Callable[[PresenceStore], PresenceTracker], sent: list
) -> None:
    with override_settings(PULSE_PRESENCE_TIMEOUT_SECONDS=SHORT_TIMEOUT):
        doomed, other = make_tracker(new_store()), make_tracker(new_store())
    doomed.connection_opened(7)
    await doomed.flush()
    doomed.close()
    await asyncio.sleep(SHORT_TIMEOUT + 0.2)  # expired; no process swept it
    assert online(other, 7) == [False]

    other.connection_opened(7)
    await other.flush()
    assert online(other, 7) == [True]
    assert transitions(sent) == [(7, True), (7, False), (7, True)]


async def test_online_users_are_listed_most_recently_seen_first(
    new_store: StoreFactory, make_tracker: Callable[[PresenceStore], PresenceTracker], sent: list
) -> None:
    tracker = make_tracker(new_store())
    for user_id in (1, 2, 3, 4):
        await asyncio.to_thread(tracker.logged_in, user_id)
        await asyncio.sleep(0.01)
    await asyncio.to_thread(tracker.logged_out, 4)
    tracker.connection_opened(1)  # seen again, now
    await tracker.flush()

    listed = tracker.online_users(10)
    assert [user_id for user_id, _ in listed] == [1, 3, 2]
    assert [seen for _, seen in listed] == sorted((seen for _, seen in listed), reverse=True)
    assert [user_id for user_id, _ in tracker.online_users(2)] == [1, 3]
    assert tracker.online_users(0) == []
    states = tracker.states([1, 4, 99])
    assert states[4].online is False and states[4].last_seen is not None
    assert states[99] == PresenceState(online=False, last_seen=None)


# Redis: cost, coalescing, outages -----------------------------------------------------


async def test_round_trips_per_connection_do_not_grow_with_users_online(
    redis_store: StoreFactory,
    redis_srv: RedisServer,
    make_tracker: Callable[[PresenceStore], PresenceTracker],
    sent: list,
) -> None:
    others = make_tracker(redis_store())
    tracker = make_tracker(redis_store(connection_class=CountingConnection))
    stats = redis.Redis.from_url(redis_srv.url)

    def evalsha_calls() -> int:
        return int(stats.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    async def cost(action: Callable[[], None]) -> tuple[int, int]:
        sends, calls = CountingConnection.sent, evalsha_calls()
        action()
        await tracker.flush()
        return CountingConnection.sent - sends, evalsha_calls() - calls

    # Warm up: the connection handshake and the scripts' loading happen once.
    tracker.connection_opened(5)
    await tracker.flush()
    tracker.connection_closed(5)
    await tracker.flush()

    measured = {}
    for users_online in (10, 500):
        for user_id in range(1000, 1000 + users_online):
            others.connection_opened(user_id)
        await others.flush()
        assert len(others.online_users(1000)) == users_online
        opened = await cost(lambda: tracker.connection_opened(5))
        second = await cost(lambda: tracker.connection_opened(5))
        closed_one = await cost(lambda: tracker.connection_closed(5))
        closed = await cost(lambda: tracker.connection_closed(5))
        measured[users_online] = (opened, second, closed_one, closed)
        for user_id in range(1000, 1000 + users_online):
            others.connection_closed(user_id)
        await others.flush()

    one_evalsha, nothing = (1, 1), (0, 0)
    assert measured[10] == measured[500] == (one_evalsha, nothing, nothing, one_evalsha)

    def reads() -> tuple[int, int]:
        sends = CountingConnection.sent
        tracker.states(list(range(1000, 1500)))
        tracker.online_users(50)
        return CountingConnection.sent - sends, len(tracker.states(list(range(500))))

    assert reads() == (2, 500)  # one round trip each, for 500 ids
    for user_id in range(3000, 3500):
        tracker.connection_opened(user_id)
    assert await cost(lambda: None) == (1, 1)  # 500 users opened at once: one batch
    sends = CountingConnection.sent
    await tracker.refresh()
    assert CountingConnection.sent - sends == 1  # renewing 500 users and sweeping
    stats.close()


async def test_an_open_and_close_before_the_write_cost_nothing(
    redis_store: StoreFactory, make_tracker: Callable[[PresenceStore], PresenceTracker], sent: list
) -> None:
    tracker = make_tracker(redis_store(connection_class=CountingConnection))
    tracker.states([1])  # connect
    sends = CountingConnection.sent
    tracker.connection_opened(7)
    tracker.connection_closed(7)
    await tracker.flush()
    await asyncio.sleep(0.1)  # the worker too finds nothing to write
    assert CountingConnection.sent == sends
    assert sent == []


async def test_the_worker_writes_by_itself(
    redis_store: StoreFactory, make_tracker: Callable[[PresenceStore], PresenceTracker], sent: list
) -> None:
    tracker = make_tracker(redis_store())
    tracker.connection_opened(7)
    await eventually(lambda: transitions(sent) == [(7, True)], what="worker wrote")
    tracker.connection_closed(7)
    await eventually(lambda: transitions(sent) == [(7, True), (7, False)], what="worker removed")


async def test_a_redis_outage_degrades_presence_and_recovers(
    tmp_path: Any,
    make_tracker: Callable[[PresenceStore], PresenceTracker],
    sent: list,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="users.presence")

    async def within(seconds: float, call: Callable[[], Awaitable[Any]]) -> Any:
        started = time.monotonic()
        result = await call()
        assert time.monotonic() - started < seconds
        return result

    with redis_server(tmp_path) as server:
        timeout = 2  # the login made during the outage still runs when Redis is back
        tracker = make_tracker(RedisPresenceStore.from_url(server.url, timeout))
        probe = RedisPresenceStore.from_url(server.url, timeout)
        tracker.connection_opened(1)
        tracker.connection_opened(3)
        await tracker.flush()
        assert [probe.states([1])[1].online] == [True]

        server.stop()
        lags: list[float] = []

        async def watch_the_loop() -> None:
            for _ in range(60):
                started = time.monotonic()
                await asyncio.sleep(0.01)
                lags.append(time.monotonic() - started - 0.01)

        watcher = asyncio.create_task(watch_the_loop())
        for _ in range(3):  # none of it raises, none of it waits on Redis
            started = time.monotonic()
            tracker.connection_opened(2)
            tracker.connection_closed(3)
            tracker.connection_opened(3)
            tracker.connection_closed(3)
            assert time.monotonic() - started < 0.05
            await asyncio.sleep(tracker.period)
        await within(2.5, lambda: asyncio.to_thread(tracker.logged_in, 4))
        states = await within(1.5, lambda: asyncio.to_thread(tracker.states, [1, 2, 3, 4, 5]))
        assert {u: s.online for u, s in states.items()} == {
            1: True,
            2: True,
            3: False,
            4: True,
            5: False,
        }  # this process's own view
        listed = await within(1.5, lambda: asyncio.to_thread(tracker.online_users, 10))
        assert [user_id for user_id, _ in listed] == [1, 2, 4]
        await watcher
        assert max(lags) < 0.2
        assert tracker.degraded
        sent_during_outage = list(sent)

        server.start()  # an empty Redis: it lost everything
        await eventually(
            lambda: (
                [s.online for s in probe.states([1, 2, 3, 4]).values()] == [True, True, False, True]
            ),
            timeout=4 * tracker.period + 2,
            what="re-registered",
        )
        await eventually(lambda: not tracker.degraded, what="recovered")
        probe.close()

    warnings = [r for r in caplog.records if r.getMessage() == "presence_store_unavailable"]
    assert len(warnings) == 1
    assert [r.getMessage() for r in caplog.records].count("presence_store_recovered") == 1
    assert transitions(sent_during_outage) == [(1, True), (3, True)]  # from before it
    # Redis came back empty: the re-registered users came online again, once each.
    assert sorted(transitions(sent)[2:]) == [(1, True), (2, True), (4, True)]
