"""``@username`` mentions: the one parser, and the rule it follows.

A mention is ``@`` followed by a username, where:

- the ``@`` starts the text or follows a character that is not a letter, digit, ``_``
  or ``@`` (so ``ann@example.com`` and ``@@bob`` mention nobody);
- the username is the longest run of letters, digits and ``_ . + -`` after it, with a
  trailing ``.``, ``+`` or ``-`` left out as punctuation (``thanks @bob.`` is ``bob``;
  ``@bob's``, ``(@bob)``, ``@bob,`` and ``@bob!`` are ``bob`` too);
- it matches case-insensitively (``@Bob`` is ``bob``); when accounts differ only in
  case, the exact spelling wins, and without one the mention names nobody.

Only the first ``PULSE_MAX_MENTIONS`` distinct names of a text count.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models.functions import Lower

MENTION = re.compile(r"(?<![\w@])@([\w.+-]+)")
TRAILING_PUNCTUATION = ".+-"


def mentioned_names(text: str) -> list[str]:
    """The distinct usernames ``text`` mentions, in order, as written."""
    names: dict[str, str] = {}
    for match in MENTION.finditer(text):
        name = match.group(1).rstrip(TRAILING_PUNCTUATION)
        if name and name.lower() not in names:
            names[name.lower()] = name
            if len(names) >= settings.PULSE_MAX_MENTIONS:
                break
    return list(names.values())


def mentioned_user_ids(text: str) -> set[int]:
    """The active users ``text`` mentions, found in one query."""
    names = mentioned_names(text)
    if not names:
        return set()
    candidates = (
        User.objects.annotate(lowered=Lower("username"))
        .filter(lowered__in=[name.lower() for name in names], is_active=True)
        .values_list("pk", "username")
    )
    by_lowered: dict[str, list[tuple[int, str]]] = {}
    for pk, username in candidates:
        by_lowered.setdefault(username.lower(), []).append((pk, username))
    found: set[int] = set()
    for name in names:
        matches = by_lowered.get(name.lower(), [])
        exact = [pk for pk, username in matches if username == name]
        if exact:
            found.add(exact[0])
        elif len(matches) == 1:
            found.add(matches[0][0])
    return found
