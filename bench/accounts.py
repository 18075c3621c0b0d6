"""Benchmark accounts written straight to a Pulse database, with a bearer token each.

    python -m bench.accounts PREFIX COUNT OUTPUT   # (the server's environment)

Creates the users ``PREFIX0`` ... ``PREFIX<COUNT-1>`` and writes their tokens, in that
order, to OUTPUT as a JSON list. Signing up and logging in through the API costs two
password hashes per user (about 0.3 s of CPU each): 1,000 accounts for scenario (h)
would take minutes of the server's two cores. Here the password is hashed once and
shared; every user is still saved through the model (the ``post_save`` receivers make
its profile and its ``USER_JOINED`` activity, published after the commit) and its
token is issued by ``users.tokens``, as ``login`` does. Nobody signs in, so presence
gets no login member: the users are offline until a connection of theirs opens.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import django


def main(argv: list[str]) -> None:
    prefix, count, output = argv[0], int(argv[1]), Path(argv[2])
    django.setup()

    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.db import transaction

    from bench.loadgen import BENCH_PASSWORD
    from users.tokens import token_issue

    password = make_password(BENCH_PASSWORD)  # one hash, shared by every account
    tokens: list[str] = []
    with transaction.atomic():
        for number in range(count):
            name = f"{prefix}{number}"
            user = User(username=name, email=f"{name}@example.com", password=password)
            user.save()
            tokens.append(token_issue(user=user))
    output.write_text(json.dumps(tokens))


if __name__ == "__main__":
    main(sys.argv[1:])
