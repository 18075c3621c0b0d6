"""Profiles and API tokens for Django's own ``User``."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxLengthValidator
from django.db import models

BIO_MAX_LENGTH = 1000


class Profile(models.Model):
    """Public profile of a user, built by the ``User`` ``post_save`` receiver."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    website = models.URLField(blank=True, default="")
    bio = models.TextField(
        blank=True,
        default="",
        max_length=BIO_MAX_LENGTH,
        validators=[MaxLengthValidator(BIO_MAX_LENGTH)],
    )

    def __str__(self) -> str:
        return f"Profile of {self.user}"


class ApiToken(models.Model):
    """A bearer token; only its SHA-256 digest is stored, never the token itself."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"Token of {self.user} (expires {self.expires_at:%Y-%m-%d})"
