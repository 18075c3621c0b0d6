"""The committed ``schema.graphql`` is exactly the schema the code serves."""

from __future__ import annotations

from pathlib import Path

from strawberry.printer import print_schema

from schema.schema import schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_file_matches_the_code() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert committed.strip() == print_schema(schema).strip(), (
        "schema.graphql is out of date: run `make schema` and commit it "
        "(if a contract name changed, say why in the README's changelog)."
    )


def test_schema_file_holds_the_contract_root_fields() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    for line in (
        "type Query {",
        "type Mutation {",
        "type Subscription {",
        "interface Event implements Node {",
        "createStatusChange(input: CreateStatusChangeInput!): StatusChange! @isSignedIn",
        "activity(after: String = null, kinds: [ActivityKind!] = null, actorId: ID = null): Activity!",
    ):
        assert line in committed
