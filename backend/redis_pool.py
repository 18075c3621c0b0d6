"""One Redis connection pool per process for Django's cache.

Django keeps its cache objects per async context, so under ASGI each request builds a
new ``RedisCache`` with a new client and a new connection pool, and its first command
opens a new TCP connection to Redis (about a fifth of a write's server CPU, measured
with py-spy; Django ticket #35651). Django's Redis backend takes the pool class as an
option (``OPTIONS["pool_class"]``) and asks it for a pool with ``from_url``: this class
answers with the one pool it already made for the same URL and options, so every
request shares the process's connections.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

_pools: dict[tuple[str, str], redis.ConnectionPool] = {}
_pools_lock = threading.Lock()


class SharedConnectionPool(redis.ConnectionPool):
    """A ``redis.ConnectionPool`` whose ``from_url`` returns one pool per URL and
    options for the whole process (redis-py's pools are thread-safe)."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Any:
        key = (url, repr(sorted(kwargs.items())))
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = super().from_url(url, **kwargs)
            return pool
