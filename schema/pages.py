"""The live page at ``/``: sign in, post, and watch the activity stream update live.

The page is a Django template plus one small script (``schema/static/pulse/live.js``)
that talks to the public API only: mutations over HTTP with the session cookie, the
``activity`` subscription over the WebSocket with the vendored ``graphql-ws`` client.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import get_script_prefix
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from events.cursors import encode_activity_cursor
from events.selectors import recent_activities_start

RECENT_ACTIVITIES = 20  # history shown on load, replayed by the subscription itself


def live_page_csp(host: str) -> str:
    """Only this server's scripts, styles, API and WebSocket; no inline code at all.

    Trusted Types make any HTML-string sink (``innerHTML`` and friends) throw, so the
    page can only render user text as text.
    """
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self' ws://{host} wss://{host}",
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


@require_safe
@never_cache
def live_page(request: HttpRequest) -> HttpResponse:
    """The live page; the stream starts just before the viewer's recent history."""
    get_token(request)  # sets the csrftoken cookie the script sends back as X-CSRFToken
    user = request.user
    viewer_id = user.pk if user.is_authenticated else None
    start = recent_activities_start(viewer_id=viewer_id, count=RECENT_ACTIVITIES)
    config = {
        "graphqlPath": f"{get_script_prefix()}graphql/",
        "startCursor": encode_activity_cursor(start),
        "viewer": user.get_username() if user.is_authenticated else None,
    }
    response = render(request, "pulse/live.html", {"config": config})
    response["Content-Security-Policy"] = live_page_csp(request.get_host())
    response["Referrer-Policy"] = "same-origin"
    return response
