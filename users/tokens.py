"""Issue, check and revoke bearer tokens.

Tokens are 256 random bits; a fast SHA-256 digest is enough to store them because,
unlike passwords, they cannot be guessed from a dictionary.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from users.models import ApiToken

TOKEN_PREFIX = "pulse_"  # noqa: S105 (a prefix, not a secret)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_issue(*, user: User) -> str:
    """Create a token for ``user`` and return it; it is never stored in clear."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(
        user=user,
        digest=_digest(token),
        expires_at=timezone.now() + timedelta(seconds=settings.PULSE_TOKEN_TTL_SECONDS),
    )
    return token


def token_user(*, token: str) -> User | None:
    """Return the active user a valid, unexpired token belongs to, else ``None``.

    One query written out: every authenticated request runs it, and building the same
    ``select_related`` query with the ORM each time cost 0.6 ms, six times the query.
    """
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    found = list(
        User.objects.raw(
            _token_user_sql(),
            [_digest(token), connection.ops.adapt_datetimefield_value(timezone.now())],
        )
    )
    return found[0] if found else None


@functools.cache
def _token_user_sql() -> str:
    """The token's active user; only the two table names come from the models."""
    quote = connection.ops.quote_name
    user, token = User._meta.db_table, ApiToken._meta.db_table
    return (
        f"SELECT u.* FROM {quote(user)} u JOIN {quote(token)} t ON t.user_id = u.id"  # noqa: S608 (table names)
        " WHERE t.digest = %s AND t.expires_at > %s AND u.is_active"
    )


def token_revoke(*, token: str) -> bool:
    """Delete the token; return whether it existed."""
    deleted, _ = ApiToken.objects.filter(digest=_digest(token)).delete()
    return deleted > 0


def bearer_token(header: str | None) -> str | None:
    """Extract the token from an ``Authorization: Bearer <token>`` value."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
