"""Receivers of the users app.

``User`` is Django's model, not ours, so a ``post_save`` receiver is the way to act on
its creation (the case the seed document gives for signals); sign-ins and sign-outs
reach presence through Django's ``user_logged_in`` / ``user_logged_out``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_save

from events.services import activity_record_user_joined
from users.presence import presence_tracker
from users.services import profile_create


def user_saved(sender: type[User], instance: User, created: bool, raw: bool, **_: Any) -> None:
    """Give a new user a profile and announce that they joined; ignore fixture loads."""
    if raw or not created:
        return
    profile_create(user=instance)
    activity_record_user_joined(user=instance)


def user_signed_in(sender: Any, user: AbstractBaseUser, **_: Any) -> None:
    """A sign-in makes its user online (``users.presence``)."""
    if user.pk is not None:
        presence_tracker().logged_in(user.pk)


def user_signed_out(sender: Any, user: AbstractBaseUser | AnonymousUser | None, **_: Any) -> None:
    """A sign-out makes its user offline unless a live connection of theirs is open;
    Django sends ``user=None`` when nobody was signed in."""
    if user is not None and user.pk is not None:
        presence_tracker().logged_out(user.pk)


def connect() -> None:
    """Connect this app's receivers (called from ``UsersConfig.ready``)."""
    post_save.connect(user_saved, sender=User, dispatch_uid="users.user_saved")
    user_logged_in.connect(user_signed_in, dispatch_uid="users.presence_logged_in")
    user_logged_out.connect(user_signed_out, dispatch_uid="users.presence_logged_out")
