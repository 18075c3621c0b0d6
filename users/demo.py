"""Plausible demo content for ``manage.py seed_demo``: pure functions of a seeded RNG.

Nothing here touches the database, so the same seed always yields the same people,
statuses and comments.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "karim", "lena", "mallory", "niaj", "olivia", "peggy", "quentin", "rupert", "sybil",
    "trent", "ursula", "victor", "wendy", "xavier", "yusuf", "zoe",
)  # fmt: skip
LAST_NAMES = (
    "adler", "baptiste", "chen", "dubois", "eze", "fischer", "garcia", "haddad", "ito",
    "jensen", "kowalski", "lindqvist", "moreau", "nakamura", "okafor", "petrov", "quinn",
    "rossi", "silva", "tanaka", "umar", "varga", "weber", "xu", "yilmaz", "zhou",
)  # fmt: skip
ROLES = (
    "Backend engineer", "Designer", "Product manager", "SRE", "Data scientist",
    "Frontend developer", "Support lead", "Security engineer", "Tech writer",
)  # fmt: skip
PLACES = ("Lisbon", "Nairobi", "Montreal", "Osaka", "Berlin", "Lima", "Auckland", "Oslo")
HOBBIES = (
    "Climbs on weekends.", "Bakes sourdough.", "Runs a tiny Go club.", "Plays the cello.",
    "Collects mechanical keyboards.", "Trains for a marathon.", "Grows chillies.",
)  # fmt: skip
THINGS = (
    "the v2 API", "the new onboarding flow", "dark mode", "the billing migration",
    "search ranking", "the mobile release", "the flaky CI job", "the status page",
    "websocket reconnects", "the Q3 roadmap",
)  # fmt: skip
STATUSES = (
    "shipping {thing}", "reviewing {thing}", "debugging {thing}", "pairing on {thing}",
    "writing docs for {thing}", "on call this week", "out for lunch",
    "back from vacation", "heads down until 3pm", "demoing {thing} at 4",
)  # fmt: skip
COMMENTS = (
    "Nice work!", "How did you fix it?", "Congrats on {thing} 🎉", "+1",
    "Can I help with {thing}?", "Let's sync tomorrow about {thing}.",
    "This broke my local setup, investigating.", "Looks great on my phone.",
    "Did you see the numbers for {thing}?", "Ping me when it's deployed.",
)  # fmt: skip


@dataclass(frozen=True)
class DemoPerson:
    name: str
    bio: str
    website: str


def demo_username(rng: random.Random, taken: set[str]) -> str:
    """A username nobody has: a free first name, else ``first.last`` (``peggy.moreau``),
    so no two demo users look alike (``peggy`` and ``peggy2``); a number only when every
    pair is taken."""
    free = [name for name in FIRST_NAMES if name not in taken]
    if free:
        return rng.choice(free)
    pairs = [f"{first}.{last}" for first in FIRST_NAMES for last in LAST_NAMES]
    free = [name for name in pairs if name not in taken]
    if free:
        return rng.choice(free)
    stem, number = rng.choice(pairs), 2
    while f"{stem}{number}" in taken:
        number += 1
    return f"{stem}{number}"


def demo_person(rng: random.Random, taken: set[str]) -> DemoPerson:
    """A person with a username nobody has, a bio and, for most, a website."""
    name = demo_username(rng, taken)
    bio = f"{rng.choice(ROLES)} in {rng.choice(PLACES)}. {rng.choice(HOBBIES)}"
    website = f"https://{name.replace('.', '-')}.example.com" if rng.random() < 0.7 else ""
    return DemoPerson(name=name, bio=bio, website=website)


def demo_status(rng: random.Random) -> str:
    return rng.choice(STATUSES).format(thing=rng.choice(THINGS))


def demo_comment(rng: random.Random) -> str:
    return rng.choice(COMMENTS).format(thing=rng.choice(THINGS))


def with_mention(rng: random.Random, text: str, usernames: list[str]) -> str:
    """``text`` addressed to one of ``usernames`` (``@name``), as people write it."""
    name = rng.choice(usernames)
    return rng.choice(("@{name} {text}", "{text} cc @{name}")).format(name=name, text=text)
