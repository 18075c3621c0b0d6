"""``manage.py seed_demo``: demo people, status changes and comments, written for real.

Every row goes through the normal write path (model saves and the events services), so
the receivers build each profile, append each activity to the log and publish it after
its commit, exactly as for a GraphQL mutation.
"""

from __future__ import annotations

import argparse
import random
import sys
from typing import Any

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from rich.console import Console
from rich.progress import Progress

from events import selectors, services
from events.models import Comment, Event, Notification, Visibility
from events.visibility import can_see
from users.demo import DemoPerson, demo_comment, demo_person, demo_status, with_mention
from users.services import profile_update

# Printed for everyone to sign in with; passes Django's four validators (checked per user).
DEMO_PASSWORD = "pulse-live-demo"  # noqa: S105
PRIVATE_SHARE = 0.15
COMMENT_SHARE = 0.45
REPLY_SHARE = 0.8
MENTION_SHARE = 0.3  # of public events: so the demo inboxes are not empty


def count(value: str) -> int:
    """An ``argparse`` type: a whole number, zero or more."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


class Command(BaseCommand):
    help = (
        "Create demo users (with a bio and a website), status changes and comments (some "
        "replying to others, some PRIVATE) through the normal write path, so each one is "
        "logged as an activity and published after its commit. Run it again to add more "
        "(a taken first name becomes first.last, never a near-twin). Publishing reaches "
        "a running server's live subscribers at once only when REDIS_URL is set (this "
        "command is another process); "
        "without it, a server sharing the database shows them when it next re-reads the "
        "log, within 5 seconds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=count, default=10, help="users to create (10)")
        parser.add_argument("--events", type=count, default=50, help="events to create (50)")
        parser.add_argument(
            "--seed", type=int, help="random seed: the same seed writes the same content"
        )
        parser.add_argument(
            "--password", default=DEMO_PASSWORD, help=f"the demo users' password ({DEMO_PASSWORD})"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Demo content, not secrets: a reproducible PRNG is the point.
        seed: int | None = options["seed"]
        if seed is None:
            seed = random.randrange(2**32)  # noqa: S311
        rng = random.Random(seed)  # noqa: S311
        password: str = options["password"]
        last_activity_before = selectors.latest_activity_id()
        notifications_before = Notification.objects.count()
        # rich draws the bar itself; Django's wrapper would add newlines and colours.
        console = Console(file=getattr(self.stderr, "_out", sys.stderr))
        with Progress(console=console) as progress:
            people = self._create_users(rng, options["users"], password, progress)
            actors = people or list(User.objects.filter(is_active=True).order_by("id"))
            if options["events"] and not actors:
                raise CommandError("There are no users to write events as: pass --users.")
            events = self._create_events(rng, options["events"], actors, progress)

        comments = sum(isinstance(event, Comment) for event in events)
        private = sum(event.visibility == Visibility.PRIVATE for event in events)
        activities = selectors.activity_count_after(after_id=last_activity_before)
        self.stdout.write(
            f"Created {_plural(len(people), 'user')}, "
            f"{_plural(len(events) - comments, 'status change')} and "
            f"{_plural(comments, 'comment')} ({private} private); "
            f"{_plural(activities, 'activity', 'activities')} logged and "
            f"{_plural(Notification.objects.count() - notifications_before, 'notification')} "
            f"written (seed {seed})."
        )
        if people:
            self.stdout.write("Users: " + ", ".join(user.username for user in people))
            self.stdout.write(f"demo password: {password}")

    def _create_users(
        self, rng: random.Random, number: int, password: str, progress: Progress
    ) -> list[User]:
        task = progress.add_task("users", total=number)
        # One hash for all: PBKDF2 takes ~0.2 s a call, and demo users share the password.
        password_hash = make_password(password)
        users = []
        taken = set(User.objects.values_list("username", flat=True))
        for _ in range(number):
            user = demo_user_create(demo_person(rng, taken), password, password_hash)
            taken.add(user.username)
            users.append(user)
            progress.advance(task)
        return users

    def _create_events(
        self, rng: random.Random, number: int, actors: list[User], progress: Progress
    ) -> list[Event]:
        task = progress.add_task("events", total=number)
        events: list[Event] = []
        for _ in range(number):
            actor = rng.choice(actors)
            visibility = Visibility.PRIVATE if rng.random() < PRIVATE_SHARE else Visibility.PUBLIC
            others = [a.username for a in actors if a.pk != actor.pk]
            mentions = others and visibility == Visibility.PUBLIC and rng.random() < MENTION_SHARE
            event: Event
            if rng.random() < COMMENT_SHARE:
                # Reply only to what the actor may see, as the API allows.
                targets = [e for e in events if can_see(actor.pk, e)]
                target = rng.choice(targets) if targets and rng.random() < REPLY_SHARE else None
                body = demo_comment(rng)
                event = services.comment_create(
                    actor=actor,
                    body=with_mention(rng, body, others) if mentions else body,
                    target=target,
                    visibility=visibility,
                )
            else:
                status = demo_status(rng)
                event = services.status_change_create(
                    actor=actor,
                    status=with_mention(rng, status, others) if mentions else status,
                    visibility=visibility,
                )
            events.append(event)
            progress.advance(task)
        return events


def demo_user_create(person: DemoPerson, password: str, password_hash: str) -> User:
    """Save one demo user and fill in their profile.

    A normal save: the ``post_save`` receiver builds the profile and logs ``USER_JOINED``.
    """
    username = person.name
    user = User(username=username, email=f"{username}@example.com", password=password_hash)
    try:
        user.full_clean()
        validate_password(password, user=user)
    except ValidationError as exc:
        raise CommandError(f"Cannot create {username}: {' '.join(exc.messages)}") from exc
    with transaction.atomic():
        user.save()
        profile_update(user=user, website=person.website, bio=person.bio)
    return user


def _plural(number: int, singular: str, plural: str | None = None) -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"
