"""Helpers shared by the tests."""

from __future__ import annotations

import collections
import json
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.test import Client

PASSWORD = "correct horse 9 battery"


def gql(
    client: Client, query: str, variables: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    """POST one GraphQL operation and return the decoded body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.post(
        "/graphql/",
        data=json.dumps({"query": query, "variables": variables or {}}),
        content_type="application/json",
        headers=headers,
    )
    body: dict[str, Any] = response.json()
    return body


def error_codes(body: dict[str, Any]) -> list[str]:
    """The ``extensions.code`` of each error in a GraphQL response."""
    return [error["extensions"]["code"] for error in body.get("errors", [])]


def split_text_frames(frames: bytes) -> list[bytes]:
    """The payloads of ``backend.server.extensions.text_frame`` frames joined together."""
    payloads, position = [], 0
    while position < len(frames):
        size, position = frames[position + 1] & 0x7F, position + 2
        if size == 126:
            (size,), position = struct.unpack_from("!H", frames, position), position + 2
        elif size == 127:
            (size,), position = struct.unpack_from("!Q", frames, position), position + 8
        payloads.append(frames[position : position + size])
        position += size
    return payloads


def strings_in(value: Any) -> Iterator[str]:
    """Every string anywhere in a decoded JSON value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


class count_hops:
    """Count ``sync_to_async`` calls (each a trip to a worker thread) by the name of
    what each runs, from now until the test ends."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        original = SyncToAsync.__call__

        def counting(wrapper: SyncToAsync[Any, Any], *args: Any, **kwargs: Any) -> Any:
            func = wrapper.func
            self.calls[getattr(func, "__qualname__", type(func).__qualname__)] += 1
            return original(wrapper, *args, **kwargs)

        monkeypatch.setattr(SyncToAsync, "__call__", counting)

    @property
    def count(self) -> int:
        return sum(self.calls.values())
