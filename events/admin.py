"""Admin for events of every kind and a read-only view of the activity log.

Saving an event here is a normal ``.save()`` (and deleting one, even in bulk, a normal
delete with its signals), so it publishes ``UPDATED``/``CREATED``/``DELETED`` like any
other write. The log itself is append-only: the admin shows it and never edits it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from events.cursors import decode_activity_cursor, encode_activity_cursor
from events.models import Activity, Comment, Event, Notification, StatusChange

EXCERPT_LENGTH = 80


def _excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT_LENGTH else text[: EXCERPT_LENGTH - 1] + "…"


def _admin_link(obj: Any) -> str:
    """A link to ``obj``'s change page, or its name if its model has no admin."""
    opts = obj._meta
    try:
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return str(obj)
    return format_html('<a href="{}">{}</a>', url, obj)


class EventAdmin(admin.ModelAdmin):
    """What every kind of event's admin shares: actor, visibility and times."""

    list_filter = ("visibility", "created_at")
    date_hierarchy = "created_at"
    list_select_related = ("actor",)
    autocomplete_fields = ("actor",)
    readonly_fields = ("created_at", "updated_at")
    ordering = ("-id",)


@admin.register(StatusChange)
class StatusChangeAdmin(EventAdmin):
    list_display = ("id", "actor", "status", "visibility", "created_at")
    search_fields = ("status", "actor__username")
    fields = ("actor", "visibility", "status", "created_at", "updated_at")


@admin.register(Comment)
class CommentAdmin(EventAdmin):
    list_display = ("id", "actor", "excerpt", "target_link", "visibility", "created_at")
    search_fields = ("body", "actor__username")
    fields = ("actor", "visibility", "body", "target", "created_at", "updated_at")
    raw_id_fields = ("target",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Comment]:
        # Targets as their concrete kinds, for the whole page in one query.
        targets = Prefetch("target", queryset=Event.objects.select_subclasses())
        return super().get_queryset(request).prefetch_related(targets)

    @admin.display(description="body")
    def excerpt(self, comment: Comment) -> str:
        return _excerpt(comment.body)

    @admin.display(description="target", ordering="target_id")
    def target_link(self, comment: Comment) -> str:
        return "" if comment.target is None else _admin_link(comment.target)


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    """The activity log, read-only: rows are written by the signals, never by hand."""

    list_display = ("cursor", "kind", "verb", "visibility", "actor", "message", "occurred_at")
    list_filter = ("kind", "verb", "visibility")
    search_fields = ("message", "actor__username")
    list_select_related = ("actor",)
    ordering = ("-id",)
    show_full_result_count = False  # the log only grows: spare a second COUNT(*)
    fields = readonly_fields = (
        "cursor",
        "kind",
        "verb",
        "visibility",
        "actor",
        "message",
        "event_pk",
        "occurred_at",
    )

    @admin.display(description="cursor", ordering="id")
    def cursor(self, activity: Activity) -> str:
        return encode_activity_cursor(activity.pk)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Activity], search_term: str
    ) -> tuple[QuerySet[Activity], bool]:
        """Also find an activity by its public cursor (as clients and ``tail_activity`` show it)."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        activity_id = decode_activity_cursor(search_term.strip())
        if activity_id is not None:
            found |= queryset.filter(pk=activity_id)
        return found, may_have_duplicates

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Activity | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Activity | None = None) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """Notifications, read-only: the events' receivers write them, their deletes remove
    them; nobody edits an inbox by hand."""

    list_display = ("id", "recipient", "kind", "activity_message", "read", "created_at")
    list_filter = ("kind", "read", "created_at")
    search_fields = ("recipient__username", "activity__message")
    list_select_related = ("recipient", "activity")
    ordering = ("-id",)
    show_full_result_count = False
    fields = readonly_fields = (
        "recipient",
        "kind",
        "activity",
        "event_pk",
        "read",
        "created_at",
    )

    @admin.display(description="activity", ordering="activity_id")
    def activity_message(self, notification: Notification) -> str:
        return _excerpt(notification.activity.message)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Notification | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Notification | None = None) -> bool:
        return False
