"""Presence: which users are online, shared by every server process (state, not history).

A user is online while they hold at least one *member*: one per server process with a
live connection of theirs open (``process:<uuid>``), and ``login`` for a sign-in (the
``user_logged_in`` signal; not refreshed, so it lasts ``PULSE_PRESENCE_TIMEOUT_SECONDS``
unless ``user_logged_out`` removes it first). Each member has an expiry; a process
refreshes its members every third of the timeout, so the users of a process that
crashed go offline by themselves one timeout later.

Each process has one :class:`PresenceTracker` (:func:`presence_tracker`). It counts the
process's open connections per user; only a user's first opened and last closed
connection reach the store, from a worker task that batches them (an open and a close
that meet before it runs cost nothing). The store is Redis when ``REDIS_URL`` is set,
else a dictionary of this process (:class:`MemoryPresenceStore`, same semantics).

Redis keys (times in milliseconds of Redis's own clock, ``TIME``, so that the clocks of
the processes do not matter):

``pulse:presence:user:<id>``
    sorted set, member -> expiry; ``PEXPIRE``-d one timeout after its latest expiry.
``pulse:presence:online``
    sorted set, user id -> the user's latest member expiry: the users online, or whose
    expiry passed but whose offline transition the sweep has not published yet.
``pulse:presence:recent``
    sorted set, the same users -> last seen (for ``online_users``, newest first).
``pulse:presence:seen``
    hash, user id -> last seen, for every user ever seen (it outlives being online).

``online`` and ``recent`` are ``PEXPIRE``-d two timeouts after the last write (by
then everything in them has expired); ``seen`` is kept. Every change is one of three
Lua scripts, run with ``EVALSHA`` (loaded again after ``NOSCRIPT``), each atomic:

``APPLY``
    sets or removes members (``process:<uuid>`` or ``login``) of users, pruning
    expired ones, and updates ``online``/``recent``/``seen``.
``MAINTAIN``
    the refresher's: renews this process's member for each user it has connections
    for, then sweeps: finds the users of ``online`` whose expiry passed, prunes them
    and takes them out.
``ONLINE_USERS``
    reads ``recent`` newest first, keeping the users whose expiry is still ahead.

The scripts return the transitions they made (a user who entered or left ``online``;
one still there whose expiry passed counts as gone, then back if renewed), and only
their caller publishes them (``PRESENCE_GROUP``): one message per transition, whatever
the number of processes or sockets.

Cost in Redis round trips: a user's first connection opened or last one closed in a
process is one ``EVALSHA`` (fewer when the worker batches several users), whatever the
number of users online (each script step is O(log n) on the sorted sets); other
connections cost none. A login or logout is one; ``states`` one pipeline (``TIME``,
``ZMSCORE``, ``HMGET``) for any number of users; ``online_users`` one; the refresher one
pipeline per period (one ``MAINTAIN`` call per 2,000 local users). Publishing a
transition adds the channel layer's own ``PUBLISH``.

A Redis outage degrades presence and nothing else: nothing raises into the caller,
the event loop never waits on Redis (the worker and refresher call the sync client
through ``asyncio.to_thread``, with one-second socket timeouts), reads fall back to
this process's own view, writes are kept for later; one warning is logged per outage.
The refresher keeps trying every period; when Redis answers, it re-registers this
process's connections and logins (a restarted Redis has lost them) and logs the
recovery. Transitions are not published while Redis is away.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from events.publisher import group_publish

logger = logging.getLogger(__name__)

NAMESPACE = settings.PULSE_REDIS_NAMESPACE  # deployments sharing a Redis differ here
PRESENCE_GROUP = f"{NAMESPACE}.presence"
PRESENCE_MESSAGE_TYPE = "presence.changed"

KEY_PREFIX = f"{NAMESPACE}:presence:"
USER_KEY_PREFIX = KEY_PREFIX + "user:"
ONLINE_KEY = KEY_PREFIX + "online"
RECENT_KEY = KEY_PREFIX + "recent"
SEEN_KEY = KEY_PREFIX + "seen"
LOGIN_MEMBER = "login"
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0
REFRESH_CHUNK = 2000  # users per MAINTAIN call (a pipeline sends them all at once)
SWEEP_LIMIT = 1000  # expired users taken out per sweep (the rest at the next one)


@dataclass(frozen=True)
class PresenceState:
    """A user's presence: online or not, and when they were last seen."""

    online: bool
    last_seen: float | None  # unix seconds; None if never seen


class Transition(NamedTuple):
    """A user went online or offline (``last_seen`` in unix seconds)."""

    user_id: int
    online: bool
    last_seen: float


# A member change: (user id, member, ttl in seconds, or None to remove the member).
Change = tuple[int, str, float | None]


class PresenceStore(Protocol):
    """Where presence lives: Redis (shared) or this process's memory."""

    timeout: float
    blocking: bool  # True when calls do network I/O (keep them off the event loop)

    def apply(self, changes: Sequence[Change]) -> list[Transition]:
        """Set or remove members; the transitions they made."""
        ...

    def maintain(self, member: str, user_ids: Sequence[int]) -> list[Transition]:
        """Renew ``member`` for ``user_ids``, then take out the users who timed out."""
        ...

    def states(self, user_ids: Sequence[int]) -> dict[int, PresenceState]:
        """The presence of each of ``user_ids``."""
        ...

    def online_users(self, limit: int) -> list[tuple[int, float]]:
        """Up to ``limit`` online users with their last seen time, newest first."""
        ...

    def close(self) -> None:
        """Release the store's connections."""
        ...


# Redis store ---------------------------------------------------------------------------

# KEYS: online, recent, seen. ARGV[1]: user key prefix, ARGV[2]: timeout (ms).
_LUA_PRELUDE = """
local ONLINE, RECENT, SEEN = KEYS[1], KEYS[2], KEYS[3]
local USER_PREFIX, timeout = ARGV[1], tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local out = {}

local function emit(uid, online, seen)
  out[#out + 1] = uid
  out[#out + 1] = online
  out[#out + 1] = seen
end

-- Change one member of a user (ttl >= 0: set, expiring in ttl ms; ttl < 0: remove;
-- member nil: none), prune the expired ones and settle the user's presence.
local function settle(uid, member, ttl)
  local key = USER_PREFIX .. uid
  local expiry = tonumber(redis.call('ZSCORE', ONLINE, uid))
  if expiry and expiry <= now then
    -- timed out, not swept yet: that transition comes first
    emit(uid, 0, tonumber(redis.call('HGET', SEEN, uid)) or (expiry - timeout))
    redis.call('ZREM', ONLINE, uid)
    redis.call('ZREM', RECENT, uid)
    expiry = nil
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if member then
    if ttl >= 0 then
      redis.call('ZADD', key, now + ttl, member)
    else
      redis.call('ZREM', key, member)
    end
    redis.call('HSET', SEEN, uid, now)
  end
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #top == 0 then
    if expiry then
      redis.call('ZREM', ONLINE, uid)
      redis.call('ZREM', RECENT, uid)
      emit(uid, 0, tonumber(redis.call('HGET', SEEN, uid)) or now)
    end
    return
  end
  local latest = tonumber(top[2])
  local seen = now
  if not member then seen = tonumber(redis.call('HGET', SEEN, uid)) or now end
  redis.call('ZADD', ONLINE, latest, uid)
  redis.call('ZADD', RECENT, seen, uid)
  redis.call('PEXPIRE', key, latest - now + timeout)
  if not expiry then emit(uid, 1, seen) end
end

local function finish()
  redis.call('PEXPIRE', ONLINE, 2 * timeout)
  redis.call('PEXPIRE', RECENT, 2 * timeout)
  return out
end
"""

# ARGV[3..]: triples (user id, member, ttl ms or -1 to remove).
APPLY_LUA = (
    _LUA_PRELUDE
    + """
for i = 3, #ARGV, 3 do
  settle(ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]))
end
return finish()
"""
)

# ARGV[3]: this process's member, ARGV[4]: sweep limit (0: no sweep), ARGV[5..]: users.
MAINTAIN_LUA = (
    _LUA_PRELUDE
    + """
local member, limit = ARGV[3], tonumber(ARGV[4])
for i = 5, #ARGV do
  settle(ARGV[i], member, timeout)
end
if limit > 0 then
  local due = redis.call('ZRANGEBYSCORE', ONLINE, '-inf', now, 'LIMIT', 0, limit)
  for _, uid in ipairs(due) do
    settle(uid, nil, 0)
  end
end
return finish()
"""
)

# KEYS: online, recent. ARGV[1]: limit. Returns pairs (user id, last seen ms).
ONLINE_USERS_LUA = """
local ONLINE, RECENT = KEYS[1], KEYS[2]
local limit = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local out, start = {}, 0
local chunk = math.min(math.max(limit, 100), 1000)
while #out < 2 * limit do
  local page = redis.call('ZREVRANGE', RECENT, start, start + chunk - 1, 'WITHSCORES')
  if #page == 0 then break end
  local ids = {}
  for i = 1, #page, 2 do ids[#ids + 1] = page[i] end
  local expiries = redis.call('ZMSCORE', ONLINE, unpack(ids))
  for i, uid in ipairs(ids) do
    local expiry = tonumber(expiries[i])
    if expiry and expiry > now and #out < 2 * limit then
      out[#out + 1] = uid
      out[#out + 1] = page[2 * i]
    end
  end
  start = start + chunk
end
return out
"""


def redis_client(url: str, **pool_options: Any) -> redis.Redis:
    """A sync client for presence: one-second timeouts, one immediate retry (a pooled
    connection that a Redis restart broke), no backoff (callers must not wait)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        **pool_options,
    )


class _Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


def _seconds(milliseconds: Any) -> float:
    return float(milliseconds) / 1000


def _transitions(reply: Sequence[Any]) -> list[Transition]:
    return [
        Transition(int(reply[i]), bool(int(reply[i + 1])), _seconds(reply[i + 2]))
        for i in range(0, len(reply), 3)
    ]


class RedisPresenceStore:
    """Presence in Redis, shared by every process (see the module docstring)."""

    blocking = True

    def __init__(self, client: redis.Redis, timeout: float) -> None:
        self.client = client
        self.timeout = timeout
        self._timeout_ms = max(1, round(timeout * 1000))
        self._apply = _Script(APPLY_LUA)
        self._maintain = _Script(MAINTAIN_LUA)
        self._online_users = _Script(ONLINE_USERS_LUA)
        self._scripts = (self._apply, self._maintain, self._online_users)

    @classmethod
    def from_url(cls, url: str, timeout: float, **pool_options: Any) -> RedisPresenceStore:
        """A store on ``url`` (``pool_options`` go to redis-py's connection pool)."""
        return cls(redis_client(url, **pool_options), timeout)

    def _run(self, calls: Sequence[tuple[_Script, Sequence[Any], Sequence[Any]]]) -> list[Any]:
        """Run script calls (script, keys, args) in one pipeline: one round trip, plus
        one to load the scripts when Redis does not have them (after a restart)."""
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for script, keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                return pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
                # Without MULTI, a missing script fails its command only, runs nothing.
                loader = self.client.pipeline(transaction=False)
                for script in self._scripts:
                    loader.script_load(script.source)
                loader.execute()
        raise AssertionError("unreachable")

    def _keys(self) -> tuple[str, str, str]:
        return (ONLINE_KEY, RECENT_KEY, SEEN_KEY)

    def apply(self, changes: Sequence[Change]) -> list[Transition]:
        """Set or remove members in one ``APPLY`` call."""
        if not changes:
            return []
        args: list[Any] = [USER_KEY_PREFIX, self._timeout_ms]
        for user_id, member, ttl in changes:
            args += [user_id, member, -1 if ttl is None else max(0, round(ttl * 1000))]
        (reply,) = self._run([(self._apply, self._keys(), args)])
        return _transitions(reply)

    def maintain(self, member: str, user_ids: Sequence[int]) -> list[Transition]:
        """Renew and sweep in one pipeline of ``MAINTAIN`` calls."""
        chunks = [user_ids[i : i + REFRESH_CHUNK] for i in range(0, len(user_ids), REFRESH_CHUNK)]
        chunks = chunks or [[]]
        calls = [
            (
                self._maintain,
                self._keys(),
                [
                    USER_KEY_PREFIX,
                    self._timeout_ms,
                    member,
                    SWEEP_LIMIT if index == len(chunks) - 1 else 0,
                    *chunk,
                ],
            )
            for index, chunk in enumerate(chunks)
        ]
        return [t for reply in self._run(calls) for t in _transitions(reply)]

    def states(self, user_ids: Sequence[int]) -> dict[int, PresenceState]:
        """One pipeline: ``TIME``, ``ZMSCORE`` online, ``HMGET`` seen."""
        if not user_ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        pipe.zmscore(ONLINE_KEY, [str(user_id) for user_id in user_ids])
        pipe.hmget(SEEN_KEY, list(user_ids))
        (seconds, microseconds), expiries, seen = pipe.execute()
        now_ms = seconds * 1000 + microseconds // 1000
        return {
            user_id: PresenceState(
                online=expiry is not None and expiry > now_ms,
                last_seen=None if last is None else _seconds(last),
            )
            for user_id, expiry, last in zip(user_ids, expiries, seen, strict=True)
        }

    def online_users(self, limit: int) -> list[tuple[int, float]]:
        """One ``ONLINE_USERS`` call."""
        if limit <= 0:
            return []
        (reply,) = self._run([(self._online_users, (ONLINE_KEY, RECENT_KEY), [limit])])
        return [(int(reply[i]), _seconds(reply[i + 1])) for i in range(0, len(reply), 2)]

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


# In-memory store -----------------------------------------------------------------------


class MemoryPresenceStore:
    """Presence in this process's memory: the Redis store's semantics, under a lock."""

    blocking = False

    def __init__(self, timeout: float, clock: Callable[[], float] = time.time) -> None:
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._members: dict[int, dict[str, float]] = {}  # user -> member -> expiry
        self._online: dict[int, float] = {}  # user -> latest expiry (as ``online``)
        self._seen: dict[int, float] = {}

    def _settle(
        self, user_id: int, member: str | None, ttl: float | None, now: float
    ) -> list[Transition]:
        out = []
        expiry = self._online.get(user_id)
        if expiry is not None and expiry <= now:
            out.append(Transition(user_id, False, self._seen.get(user_id, expiry - self.timeout)))
            del self._online[user_id]
            expiry = None
        members = {m: e for m, e in self._members.get(user_id, {}).items() if e > now}
        if member is not None:
            if ttl is None:
                members.pop(member, None)
            else:
                members[member] = now + ttl
            self._seen[user_id] = now
        if members:
            self._members[user_id] = members
            self._online[user_id] = max(members.values())
            if expiry is None:
                out.append(Transition(user_id, True, self._seen.get(user_id, now)))
        else:
            self._members.pop(user_id, None)
            if expiry is not None:
                del self._online[user_id]
                out.append(Transition(user_id, False, self._seen.get(user_id, now)))
        return out

    def apply(self, changes: Sequence[Change]) -> list[Transition]:
        """Set or remove members."""
        with self._lock:
            now = self.clock()
            return [t for u, m, ttl in changes for t in self._settle(u, m, ttl, now)]

    def maintain(self, member: str, user_ids: Sequence[int]) -> list[Transition]:
        """Renew ``member`` for ``user_ids``, then sweep the users who timed out."""
        with self._lock:
            now = self.clock()
            out = [t for u in user_ids for t in self._settle(u, member, self.timeout, now)]
            due = [u for u, expiry in self._online.items() if expiry <= now][:SWEEP_LIMIT]
            return out + [t for u in due for t in self._settle(u, None, None, now)]

    def states(self, user_ids: Sequence[int]) -> dict[int, PresenceState]:
        """The presence of each of ``user_ids``."""
        with self._lock:
            now = self.clock()
            return {
                u: PresenceState(self._online.get(u, -math.inf) > now, self._seen.get(u))
                for u in user_ids
            }

    def online_users(self, limit: int) -> list[tuple[int, float]]:
        """Up to ``limit`` online users, most recently seen first."""
        with self._lock:
            now = self.clock()
            online = [(u, self._seen.get(u, now)) for u, e in self._online.items() if e > now]
        online.sort(key=lambda pair: (-pair[1], pair[0]))
        return online[: max(0, limit)]

    def close(self) -> None:
        """Nothing to release."""


# The per-process tracker ---------------------------------------------------------------


class PresenceTracker:
    """This process's view of presence and its link to the store.

    ``connection_opened``/``connection_closed`` run on the event loop and never wait:
    they count connections and hand the users whose first connection opened or last
    one closed to a worker task (started on the running loop when first needed),
    which writes them to the store off the loop. A refresher task renews this
    process's members and sweeps the users who timed out, every third of the timeout.
    ``logged_in``, ``logged_out``, ``states`` and ``online_users`` are sync and may do
    I/O: call them from a thread (a request's, or ``sync_to_async``), not the loop.
    No method raises.
    """

    def __init__(
        self,
        store: PresenceStore,
        *,
        process_id: str | None = None,
        period: float | None = None,
    ) -> None:
        self.store = store
        self.process_id = process_id or uuid.uuid4().hex
        self.member = f"process:{self.process_id}"
        self.timeout = store.timeout
        self.period = period if period is not None else max(store.timeout / 3, 0.05)
        self._lock = threading.Lock()
        self._connections: collections.Counter[int] = collections.Counter()
        self._synced: set[int] = set()  # users whose member this process wrote
        self._dirty: set[int] = set()  # users whose first/last connection changed
        self._logins: dict[int, float] = {}  # sign-ins here -> expiry (local view)
        self._pending_logins: dict[int, bool] = {}  # unwritten: True add, False remove
        self._degraded = False
        self._retry_at = 0.0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._io: asyncio.Lock | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()

    # Event-loop entry points ---------------------------------------------------------

    def connection_opened(self, user_id: int) -> None:
        """Count an opened live connection of ``user_id`` (non-blocking)."""
        try:
            with self._lock:
                self._connections[user_id] += 1
                first = self._connections[user_id] == 1
                if first:
                    self._dirty.add(user_id)
            if first:
                self._schedule()
        except Exception:
            logger.exception("presence_connection_opened_failed")

    def connection_closed(self, user_id: int) -> None:
        """Forget a closed live connection of ``user_id`` (non-blocking)."""
        try:
            with self._lock:
                if self._connections[user_id] <= 0:
                    del self._connections[user_id]
                    return
                self._connections[user_id] -= 1
                last = self._connections[user_id] == 0
                if last:
                    del self._connections[user_id]
                    self._dirty.add(user_id)
            if last:
                self._schedule()
        except Exception:
            logger.exception("presence_connection_closed_failed")

    # Request-thread entry points -----------------------------------------------------

    def logged_in(self, user_id: int) -> None:
        """``user_id`` signed in: online for the timeout (or while connected)."""
        try:
            with self._lock:
                self._logins[user_id] = time.time() + self.timeout
            self._write_login(user_id, add=True)
        except Exception:
            logger.exception("presence_logged_in_failed")

    def logged_out(self, user_id: int) -> None:
        """``user_id`` signed out: offline unless a live connection of theirs is open."""
        try:
            with self._lock:
                self._logins.pop(user_id, None)
            self._write_login(user_id, add=False)
        except Exception:
            logger.exception("presence_logged_out_failed")

    def states(self, user_ids: list[int]) -> dict[int, PresenceState]:
        """The presence of each of ``user_ids``, in one round trip (this process's own
        view while the store is unavailable)."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        if not self._skip_io():
            try:
                return self.store.states(ids)
            except Exception as error:
                self._failed(error)
        return self._local_states(ids)

    def online_users(self, limit: int) -> list[tuple[int, float]]:
        """Up to ``limit`` online users as (user id, last seen), most recently seen
        first, in one round trip (this process's own view while the store is away)."""
        if limit <= 0:
            return []
        if not self._skip_io():
            try:
                return self.store.online_users(limit)
            except Exception as error:
                self._failed(error)
        now = time.time()
        with self._lock:
            local = set(self._connections) | {u for u, e in self._logins.items() if e > now}
        return [(user_id, now) for user_id in sorted(local)][:limit]

    # Worker and refresher ------------------------------------------------------------

    async def flush(self) -> None:
        """Write the pending connection changes now (the worker does it by itself)."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        self._ensure_tasks(loop)
        if not self.store.blocking:
            self._flush_now()
            return
        if self._io is None or self._loop is not loop:  # the tasks run on another loop
            await asyncio.to_thread(self._flush_now)
            return
        async with self._io:
            if self._skip_io():
                return
            changes = self._take_changes()
            if not changes:
                return
            try:
                transitions = await asyncio.to_thread(self.store.apply, changes)
            except Exception as error:
                self._failed(error)
                self._redirty(changes)
                return
            self._written(changes)
            self._publish(transitions)

    async def refresh(self) -> None:
        """One refresher round now: renew this process's members, sweep, and write
        what an outage held back (the refresher task does it every period)."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        self._ensure_tasks(loop)
        if not self.store.blocking:
            self._refresh_now()
            return
        if self._io is None or self._loop is not loop:  # the tasks run on another loop
            await asyncio.to_thread(self._refresh_now)
            return
        async with self._io:
            users, logins = self._maintenance_snapshot()
            try:
                transitions = await asyncio.to_thread(self._maintain, users, logins)
            except Exception as error:
                self._failed(error)
                return
            self._maintained(users, logins)
            self._publish(transitions)
        self._wake_worker()

    def _flush_now(self) -> None:
        """The worker's job, inline (in-memory store, or no event loop here)."""
        if self._skip_io():
            return
        changes = self._take_changes()
        if not changes:
            return
        try:
            transitions = self.store.apply(changes)
        except Exception as error:
            self._failed(error)
            self._redirty(changes)
            return
        self._written(changes)
        self._publish(transitions)

    def _refresh_now(self) -> None:
        users, logins = self._maintenance_snapshot()
        try:
            transitions = self._maintain(users, logins)
        except Exception as error:
            self._failed(error)
            return
        self._maintained(users, logins)
        self._publish(transitions)
        self._flush_now()

    def _maintain(self, users: list[int], logins: list[Change]) -> list[Transition]:
        transitions = self.store.apply(logins) if logins else []
        return transitions + self.store.maintain(self.member, users)

    def _maintenance_snapshot(self) -> tuple[list[int], list[Change]]:
        """This process's users with connections, and the login changes to write: those
        an outage held back and, after an outage, every unexpired login made here."""
        now = time.time()
        with self._lock:
            for user_id in [u for u, e in self._logins.items() if e <= now]:
                del self._logins[user_id]
            wanted = dict(self._pending_logins)
            if self._degraded:
                wanted.update({u: True for u in self._logins if u not in wanted})
            logins: list[Change] = []
            for user_id, add in wanted.items():
                if not add:
                    logins.append((user_id, LOGIN_MEMBER, None))
                elif (expiry := self._logins.get(user_id)) is not None:
                    logins.append((user_id, LOGIN_MEMBER, expiry - now))
            return list(self._connections), logins

    def _maintained(self, users: list[int], logins: list[Change]) -> None:
        with self._lock:
            self._synced.update(users)
            # Users who closed while the call ran are dirty already: the worker removes.
            self._dirty.update(u for u in users if u not in self._connections)
            for user_id, _, ttl in logins:
                if self._pending_logins.get(user_id) == (ttl is not None):
                    del self._pending_logins[user_id]
            recovered, self._degraded = self._degraded, False
        if recovered:
            logger.info("presence_store_recovered")

    def _take_changes(self) -> list[Change]:
        """The dirty users whose member must be written or removed (coalesced)."""
        with self._lock:
            changes: list[Change] = []
            for user_id in self._dirty:
                wanted = user_id in self._connections
                if wanted != (user_id in self._synced):
                    changes.append((user_id, self.member, self.timeout if wanted else None))
            self._dirty.clear()
            return changes

    def _written(self, changes: list[Change]) -> None:
        with self._lock:
            for user_id, _, ttl in changes:
                if ttl is None:
                    self._synced.discard(user_id)
                else:
                    self._synced.add(user_id)

    def _redirty(self, changes: list[Change]) -> None:
        with self._lock:
            self._dirty.update(user_id for user_id, _, _ in changes)

    def _write_login(self, user_id: int, add: bool) -> None:
        if self.store.blocking:
            with contextlib.suppress(RuntimeError):  # on an event loop: not here
                loop = asyncio.get_running_loop()
                task = loop.create_task(asyncio.to_thread(self._write_login_now, user_id, add))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                return
        self._write_login_now(user_id, add)

    def _write_login_now(self, user_id: int, add: bool) -> None:
        change: Change = (user_id, LOGIN_MEMBER, self.timeout if add else None)
        with self._lock:
            self._pending_logins.pop(user_id, None)
        if not self._skip_io():
            try:
                transitions = self.store.apply([change])
            except Exception as error:
                self._failed(error)
            else:
                self._publish(transitions)
                return
        with self._lock:
            self._pending_logins[user_id] = add

    def _schedule(self) -> None:
        """Have the dirty users written: now when the store does no I/O or there is no
        event loop here, else by the worker on this loop."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush_now()
            return
        self._ensure_tasks(loop)
        if self.store.blocking:
            self._wake_worker()
        else:
            self._flush_now()

    def _ensure_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the refresher (and, for Redis, the worker) on ``loop`` unless they run
        already (here or on another live loop)."""
        if self._closed:
            return
        current = self._loop
        if current is loop and self._tasks and not any(t.done() for t in self._tasks):
            return
        if current is not None and current is not loop and current.is_running():
            return
        if current is loop:
            for task in self._tasks:
                task.cancel()
        self._loop, self._wake, self._io = loop, asyncio.Event(), asyncio.Lock()
        self._tasks = [loop.create_task(self._refresh_forever(), name="presence-refresher")]
        if self.store.blocking:
            self._tasks.append(loop.create_task(self._work(self._wake), name="presence-worker"))

    def _wake_worker(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        elif loop.is_running():
            loop.call_soon_threadsafe(wake.set)

    async def _work(self, wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            try:
                await self.flush()
            except Exception:
                logger.exception("presence_worker_failed")

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.refresh()
            except Exception:
                logger.exception("presence_refresher_failed")

    # Outages and the local view ------------------------------------------------------

    def _skip_io(self) -> bool:
        """Whether to leave the store alone for now (it failed less than a period ago;
        the refresher keeps trying)."""
        return self._degraded and time.monotonic() < self._retry_at

    def _failed(self, error: BaseException) -> None:
        with self._lock:
            first, self._degraded = not self._degraded, True
            self._retry_at = time.monotonic() + self.period
        if first:
            logger.warning(
                "presence_store_unavailable",
                extra={"error": f"{type(error).__name__}: {error}"},
            )

    def _local_states(self, user_ids: list[int]) -> dict[int, PresenceState]:
        now = time.time()
        with self._lock:
            online = {u for u in user_ids if u in self._connections or self._logins.get(u, 0) > now}
        return {u: PresenceState(u in online, now if u in online else None) for u in user_ids}

    def _publish(self, transitions: list[Transition]) -> None:
        for transition in transitions:
            group_publish(
                PRESENCE_GROUP,
                {
                    "type": PRESENCE_MESSAGE_TYPE,
                    "user_id": transition.user_id,
                    "online": transition.online,
                    "last_seen": transition.last_seen,
                },
            )

    # Lifecycle -----------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """Whether the store failed and the refresher has not reached it since."""
        return self._degraded

    def close(self) -> None:
        """Stop the worker and refresher and close the store; writes nothing (the
        members this process holds expire by themselves, as after a crash)."""
        self._closed = True
        loop, tasks = self._loop, [*self._tasks, *self._background]
        self._tasks = []
        if loop is not None and not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            for task in tasks:
                if running is loop or not loop.is_running():
                    task.cancel()
                else:
                    loop.call_soon_threadsafe(task.cancel)
        with contextlib.suppress(Exception):
            self.store.close()

    async def aclose(self) -> None:
        """:meth:`close`, then wait for the tasks to finish (on their loop)."""
        tasks = [*self._tasks, *self._background]
        loop = self._loop
        self.close()
        if loop is asyncio.get_running_loop():
            await asyncio.gather(*tasks, return_exceptions=True)


_tracker: PresenceTracker | None = None
_tracker_lock = threading.Lock()


def presence_tracker() -> PresenceTracker:
    """The process's tracker: Redis when ``settings.REDIS_URL`` is set, else in memory
    (settings are read when it is created)."""
    global _tracker
    tracker = _tracker
    if tracker is None:
        with _tracker_lock:
            if _tracker is None:
                timeout = float(settings.PULSE_PRESENCE_TIMEOUT_SECONDS)
                url = getattr(settings, "REDIS_URL", "")
                store: PresenceStore = (
                    RedisPresenceStore.from_url(url, timeout)
                    if url
                    else MemoryPresenceStore(timeout)
                )
                _tracker = PresenceTracker(store)
            tracker = _tracker
    return tracker


def reset_presence_tracker() -> None:
    """Close the process's tracker; the next :func:`presence_tracker` makes a new one
    from the settings of then (for tests)."""
    global _tracker
    with _tracker_lock:
        tracker, _tracker = _tracker, None
    if tracker is not None:
        tracker.close()
