"""Write paths for users: sign-up and profiles."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from users.models import Profile


def user_create(*, username: str, email: str, password: str) -> User:
    """Validate and create a user; its profile and activity come from ``post_save``.

    Raises ``ValidationError`` keyed by field name; nothing is written on failure.
    """
    user = User(username=username, email=email)
    errors: dict[str, list[str]] = {}
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if not email:
        errors.setdefault("email", []).append("This field cannot be blank.")
    if not password:
        errors.setdefault("password", []).append("This field cannot be blank.")
    else:
        try:
            validate_password(password, user=user)
        except ValidationError as exc:
            errors.setdefault("password", []).extend(exc.messages)
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    with transaction.atomic():
        user.save()
    return user


def profile_create(*, user: User) -> Profile:
    """Build the empty profile of a newly created user."""
    return Profile.objects.create(user=user)


def profile_update(*, user: User, website: str | None, bio: str | None) -> Profile:
    """Validate and save the given profile fields; ``None`` leaves a field unchanged."""
    profile = user.profile
    if website is not None:
        profile.website = website
    if bio is not None:
        profile.bio = bio
    profile.full_clean(exclude=["user"])
    profile.save()
    return profile
