"""Helpers shared by the tests."""

from __future__ import annotations

import json
from typing import Any

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
