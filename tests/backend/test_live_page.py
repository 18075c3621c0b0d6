"""The live page at ``/``: CSRF cookie, strict policy, no inline code, recent history."""

from __future__ import annotations

import json
import re
from typing import Any

from django.contrib.auth.models import User
from django.test import Client

from events import services
from events.cursors import decode_activity_cursor
from events.models import Activity
from tests.helpers import PASSWORD

SCRIPT = re.compile(r"<script([^>]*)>(.*?)</script>", re.S)


def page_config(client: Client) -> dict[str, Any]:
    response = client.get("/")
    assert response.status_code == 200
    match = re.search(
        r'<script id="pulse-config" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert match is not None
    config: dict[str, Any] = json.loads(match.group(1))
    return config


def test_the_page_sets_the_csrf_cookie_and_a_strict_policy(client: Client, db: None) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.cookies["csrftoken"].value
    policy = response["Content-Security-Policy"]
    assert "script-src 'self';" in policy
    assert "style-src 'self';" in policy
    assert "unsafe" not in policy
    assert "require-trusted-types-for 'script'" in policy
    assert "no-store" in response["Cache-Control"]


def test_the_page_has_no_inline_script(client: Client, db: None) -> None:
    html = client.get("/").content.decode()

    scripts = SCRIPT.findall(html)
    executable = [attrs for attrs, _ in scripts if 'type="application/json"' not in attrs]
    assert executable == [
        ' src="/static/vendor/graphql-ws.min.js" defer',
        ' src="/static/pulse/live.js" defer',
    ]
    assert re.search(r"\son[a-z]+=", html) is None  # no inline event handlers
    assert "style=" not in html


def test_only_get_and_head_are_allowed(client: Client, db: None) -> None:
    assert client.post("/").status_code == 405


def test_the_stream_starts_before_the_viewers_twenty_newest_activities(
    client: Client, alice: User, bob: User
) -> None:
    for n in range(22):
        services.status_change_create(actor=alice, status=f"news {n}", visibility="PUBLIC")
    services.status_change_create(actor=bob, status="bob's plan", visibility="PRIVATE")
    public = list(
        Activity.objects.filter(visibility="PUBLIC").order_by("id").values_list("id", flat=True)
    )
    everything = list(Activity.objects.order_by("id").values_list("id", flat=True))

    anonymous = page_config(client)
    assert anonymous["viewer"] is None
    assert anonymous["graphqlPath"] == "/graphql/"
    assert decode_activity_cursor(anonymous["startCursor"]) == public[-21]

    assert client.login(username="bob", password=PASSWORD)
    signed_in = page_config(client)
    assert signed_in["viewer"] == "bob"
    assert decode_activity_cursor(signed_in["startCursor"]) == everything[-21]


def test_a_short_log_is_shown_from_its_start(client: Client, alice: User) -> None:
    assert decode_activity_cursor(page_config(client)["startCursor"]) == 0


def test_the_page_has_the_badge_the_notification_list_and_online_now(
    client: Client, db: None
) -> None:
    """Hidden until the script knows a signed-in viewer (anonymous viewers get none)."""
    html = client.get("/").content.decode()

    assert re.search(r'<div id="notifications" class="notifications" hidden>', html)
    toggle = re.search(r'<button type="button" id="notifications-toggle"([^>]*)>', html)
    assert toggle is not None
    assert 'aria-expanded="false"' in toggle.group(1)
    assert 'aria-controls="notifications-panel"' in toggle.group(1)
    badge = re.search(r'<span id="unread-badge"([^>]*)>', html)
    assert badge is not None and 'aria-live="polite"' in badge.group(1)
    assert '<span id="unread-count"></span>' in html  # empty until the count is read
    assert re.search(r'<section id="notifications-panel"[^>]*\shidden>', html)
    assert '<button type="button" id="mark-all-read" class="link">Mark all read</button>' in html
    assert '<ol id="notification-list"' in html
    assert re.search(r'<section id="online" class="panel"[^>]*\shidden>', html)
    assert "Online now" in html
    assert '<ul id="online-list"' in html
