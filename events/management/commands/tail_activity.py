"""``manage.py tail_activity``: follow the activity log in a terminal.

It polls the stored log (the source of truth) rather than listening to the channel
layer, so it works with any database, with or without Redis, and never misses a row:
activity ids become visible in id order (see ``events.services``), so reading "after
the last id printed" is complete.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from events import selectors
from events.cursors import decode_activity_cursor, encode_activity_cursor
from events.models import Activity, ActivityKind
from events.selectors import ActivityWithEvent

Fetch = Callable[[int, int], list[ActivityWithEvent]]
RETRY_SECONDS = 2.0


def positive_int(value: str) -> int:
    """An ``argparse`` type: a whole number, 1 or more."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def positive_float(value: str) -> float:
    """An ``argparse`` type: a number of seconds above 0."""
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return number


def activity_line(activity: Activity) -> str:
    """One tab-separated line: cursor, time, kind, verb, actor, message."""
    occurred_at = timezone.localtime(activity.occurred_at).isoformat(timespec="seconds")
    return "\t".join(
        (
            encode_activity_cursor(activity.pk),
            occurred_at,
            activity.kind,
            activity.verb,
            activity.actor.username,
            activity.message,
        )
    )


class Command(BaseCommand):
    help = (
        "Print the activity log and follow it, one tab-separated line per activity: "
        "cursor, time, kind, verb, actor, message. Starts at the beginning of the log, "
        "after --after's cursor, or at its end with --new. Reads the stored log every "
        "--interval seconds, so it works with any DATABASE_URL, with or without Redis. "
        "PUBLIC activity only unless --include-private. On exit (Ctrl-C, --limit, "
        "--once) the last cursor is printed to stderr: pass it to --after to resume."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        start = parser.add_mutually_exclusive_group()
        start.add_argument("--after", metavar="CURSOR", help="resume after this activity cursor")
        start.add_argument(
            "--new", action="store_true", help="skip what is logged already: new activity only"
        )
        parser.add_argument(
            "--kind",
            dest="kinds",
            action="append",
            choices=ActivityKind.values,
            help="only this kind (repeatable)",
        )
        parser.add_argument("--user", metavar="USERNAME", help="only this user's activity")
        parser.add_argument("--include-private", action="store_true", help="PRIVATE activity too")
        parser.add_argument(
            "--interval", type=positive_float, default=0.5, help="seconds between polls (0.5)"
        )
        parser.add_argument(
            "--batch", type=positive_int, default=200, help="rows read per query at most (200)"
        )
        parser.add_argument("--once", action="store_true", help="print what is logged and exit")
        parser.add_argument("--limit", type=positive_int, help="exit after this many lines")

    def handle(self, *args: Any, **options: Any) -> None:
        after_id = self._start_id(options)
        fetch = self._fetcher(options)
        limit: int | None = options["limit"]
        if not options["once"]:
            self._note(f"Following the activity log after {encode_activity_cursor(after_id)}")
        printed = 0
        try:
            while limit is None or printed < limit:
                size = options["batch"] if limit is None else min(options["batch"], limit - printed)
                try:
                    rows = fetch(after_id, size)
                except (OperationalError, InterfaceError) as exc:
                    self._note(f"Database unavailable ({exc}); retrying in {RETRY_SECONDS} s")
                    connection.close()
                    time.sleep(RETRY_SECONDS)
                    continue
                for activity, _event in rows:
                    self.stdout.write(activity_line(activity))
                    after_id = activity.pk
                printed += len(rows)
                self.stdout.flush()
                if len(rows) < size:  # caught up with the log
                    if options["once"]:
                        break
                    time.sleep(options["interval"])
        except KeyboardInterrupt:
            pass
        except BrokenPipeError:  # the reader went away (`tail_activity | head`)
            # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        self._note(f"last cursor: {encode_activity_cursor(after_id)}")

    def _start_id(self, options: dict[str, Any]) -> int:
        if options["new"]:
            return selectors.latest_activity_id()
        if options["after"] is None:
            return 0
        after_id = decode_activity_cursor(options["after"])
        if after_id is None:
            raise CommandError(
                f"--after {options['after']!r} is not an activity cursor "
                "(use one this command or the API printed, such as YWN0aXZpdHk6MTI=)."
            )
        return after_id

    def _fetcher(self, options: dict[str, Any]) -> Fetch:
        kinds: list[str] | None = options["kinds"]
        actor_id = None
        if options["user"] is not None:
            actor_id = (
                User.objects.filter(username=options["user"]).values_list("pk", flat=True).first()
            )
            if actor_id is None:
                raise CommandError(f"No user named {options['user']!r}.")

        def fetch(after_id: int, limit: int) -> list[ActivityWithEvent]:
            if options["include_private"]:
                return selectors.log_after(
                    after_id=after_id, limit=limit, kinds=kinds, actor_id=actor_id
                )
            return selectors.activities_after(
                viewer_id=None, after_id=after_id, limit=limit, kinds=kinds, actor_id=actor_id
            )

        return fetch

    def _note(self, message: str) -> None:
        """A line on stderr, uncoloured (Django colours stderr as errors)."""
        self.stderr.write(message, style_func=str)
