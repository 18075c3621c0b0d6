"""Admin for Django's ``User`` with its profile edited inline."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.db import models
from django.http import HttpRequest

from users.models import Profile


class ProfileInline(admin.StackedInline):
    model = Profile
    fields = ("website", "bio")
    can_delete = False  # every user has one, built by the post_save receiver
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


admin.site.unregister(User)


@admin.register(User)
class PulseUserAdmin(UserAdmin):
    """Django's user admin, plus the profile and a list that reads it without N+1."""

    inlines = (ProfileInline,)
    list_display = ("username", "email", "website", "date_joined", "is_staff")
    list_select_related = ("profile",)
    search_fields = ("username", "email", "first_name", "last_name", "profile__bio")
    ordering = ("-date_joined",)

    @admin.display(description="website", ordering="profile__website")
    def website(self, user: User) -> str:
        return user.profile.website

    def get_inline_instances(
        self, request: HttpRequest, obj: User | None = None
    ) -> list[InlineModelAdmin[Any, Any]]:
        # On the add page the receiver builds the profile when the user is saved: an
        # inline there would insert a second one.
        return super().get_inline_instances(request, obj) if obj is not None else []
