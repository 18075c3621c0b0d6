"""Receivers of the users app.

``User`` is Django's model, not ours, so a ``post_save`` receiver is the way to act on
its creation (the case the seed document gives for signals).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models.signals import post_save

from events.services import activity_record_user_joined
from users.services import profile_create


def user_saved(sender: type[User], instance: User, created: bool, raw: bool, **_: Any) -> None:
    """Give a new user a profile and announce that they joined; ignore fixture loads."""
    if raw or not created:
        return
    profile_create(user=instance)
    activity_record_user_joined(user=instance)


def connect() -> None:
    """Connect this app's receivers (called from ``UsersConfig.ready``)."""
    post_save.connect(user_saved, sender=User, dispatch_uid="users.user_saved")
