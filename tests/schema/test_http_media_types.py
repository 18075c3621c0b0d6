"""GraphQL over HTTP: the response media type follows the client's Accept header."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

GRAPHQL_RESPONSE = "application/graphql-response+json"

pytestmark = pytest.mark.django_db


def post(client: Client, query: str, accept: str | None) -> tuple[int, str, dict[str, Any]]:
    headers = {"Accept": accept} if accept else {}
    response = client.post(
        "/graphql/",
        data=json.dumps({"query": query}),
        content_type="application/json",
        headers=headers,
    )
    return response.status_code, response["Content-Type"], response.json()


@pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
def test_plain_json_clients_get_application_json(client: Client, accept: str | None) -> None:
    assert post(client, "{ me { id } }", accept)[:2] == (200, "application/json")
    status, media_type, body = post(client, "{ nope }", accept)
    assert (status, media_type) == (200, "application/json")
    assert body["data"] is None


def test_graphql_response_json_when_accepted(client: Client) -> None:
    accept = f"{GRAPHQL_RESPONSE}, application/json;q=0.9"
    status, media_type, body = post(client, "{ me { id } }", accept)
    assert (status, media_type, body) == (200, GRAPHQL_RESPONSE, {"data": {"me": None}})
    # A document that does not validate is a request error: 400 (GraphQL-over-HTTP spec).
    status, media_type, body = post(client, "{ nope }", accept)
    assert (status, media_type) == (400, GRAPHQL_RESPONSE)
    assert body["data"] is None
    # An error while executing is still a 200 with the field's error.
    status, _, body = post(client, "mutation { logout }", accept)
    assert status == 200 and body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
