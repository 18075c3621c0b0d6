"""A live execution stays on the event loop when everything it needs is loaded.

The live engine executes a shape once per entry and audience on the server's loop.
strawberry-django runs every *synchronous* custom resolver through ``sync_to_async``
when the execution is async, so a sync resolver that only reads its root (a cursor,
an address) would cost a thread hop per execution: at 20 notifications a write, that
was a third of what notifications cost (bench scenario g). Such resolvers are
``async def``; these tests count the hops of whole executions.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User

from events import notifications, selectors, services
from events.models import Visibility
from events.visibility import Audience
from schema.live.shapes import Shape
from schema.live.streams import ActivityStream
from schema.notifications import NotificationStream
from schema.schema import schema
from tests.helpers import count_hops

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("close_worker_connections"),
]

ACTIVITY = """subscription { activity {
  cursor kind verb message occurredAt eventId
  actor { id username email dateJoined profile { bio website } }
  event { id visibility ... on StatusChange { status } }
} }"""
NOTIFICATIONS = """subscription { notifications { unreadCount notification {
  id cursor kind read createdAt
  activity { cursor message actor { username email } event { ... on StatusChange { status } } }
} } }"""


async def execute_counting_hops(
    shape: Shape, entry: Any, audiences: list[Audience], monkeypatch: pytest.MonkeyPatch
) -> list[bytes]:
    """The shape's payload for each audience, each without errors and with no hop."""
    hops = count_hops(monkeypatch)
    payloads = [await shape.execute(entry, audience) for audience in audiences]
    assert not [p for p in payloads if b'"errors"' in p], payloads
    assert hops.calls == {}
    return payloads


@pytest.fixture
def users() -> tuple[User, User]:
    return User.objects.create_user("ann"), User.objects.create_user("bob")


async def test_an_activity_execution_makes_no_thread_hop(
    users: tuple[User, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, _ = users
    await sync_to_async(services.status_change_create)(
        actor=ann, status="shipping", visibility=Visibility.PUBLIC
    )
    entry = (await sync_to_async(selectors.log_after)(after_id=0, limit=10))[-1]
    shape = Shape("activity", schema, ACTIVITY, None, None, ActivityStream(after_id=None))
    payloads = await execute_counting_hops(shape, entry, list(Audience), monkeypatch)
    assert all(b'"status":"shipping"' in payload for payload in payloads)


async def test_a_notification_execution_makes_no_thread_hop(
    users: tuple[User, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, bob = users
    await sync_to_async(services.status_change_create)(
        actor=ann, status="ping @bob", visibility=Visibility.PUBLIC
    )
    (entry,) = await sync_to_async(notifications.notification_log_after)(after_id=0, limit=10)
    assert entry.recipient_id == bob.pk
    shape = Shape("notifications", schema, NOTIFICATIONS, None, None, NotificationStream(None))
    (payload,) = await execute_counting_hops(shape, entry, [Audience.ACTOR], monkeypatch)
    assert b'"kind":"MENTION"' in payload and b'"unreadCount":1' in payload
