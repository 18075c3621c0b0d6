"""Failed-login throttling per username and per client address.

Counts live in Django's cache (per process by default, Redis when ``REDIS_URL`` is
set) through django-ratelimit's ``get_usage``. After ``PULSE_LOGIN_MAX_FAILURES``
failures for a username, or from an address, within ``PULSE_LOGIN_WINDOW_SECONDS``,
``login`` answers ``RATE_LIMITED`` until the window ends, whatever the password. The
username is counted whether or not it exists, so the limit reveals nothing either.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django_ratelimit.core import get_usage

logger = logging.getLogger(__name__)


class LoginAttempt:
    """One ``login`` call, seen by the two limits it counts against."""

    def __init__(self, request: Any, username: str, address: str | None) -> None:
        self.request = request
        self.keys = {"login-username": username.casefold()}
        if address:
            self.keys["login-address"] = address

    def is_limited(self) -> bool:
        """Whether either limit is already used up (counts nothing)."""
        return any(self._usage(group, increment=False) for group in self.keys)

    def record_failure(self) -> None:
        """Count a failed attempt against both limits."""
        for group in self.keys:
            self._usage(group, increment=True)

    def _usage(self, group: str, *, increment: bool) -> bool:
        rate = (settings.PULSE_LOGIN_MAX_FAILURES, settings.PULSE_LOGIN_WINDOW_SECONDS)
        value = self.keys[group]
        try:
            usage = get_usage(
                self.request, group=group, key=lambda _g, _r: value, rate=rate, increment=increment
            )
        except Exception:  # the cache (Redis) is down: fail open, and say so
            logger.warning("Login throttling unavailable: cache error", exc_info=True)
            return False
        if usage is None:
            return False
        # get_usage counts this call when incrementing; limited means the next one is over.
        return bool(usage["count"] >= usage["limit"])
