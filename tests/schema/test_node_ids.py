"""Every Node type declares its id field.

strawberry keeps the id attribute of a ``relay.Node`` type once it found one annotated
``relay.NodeID``; a type without one (strawberry-django then falls back to the pk) is
searched again, by evaluating every annotation of its classes, for each id it resolves:
about 100 µs per id, on every query, mutation and live execution.
"""

from __future__ import annotations

import re

import pytest
from strawberry import relay
from strawberry.types.base import StrawberryObjectDefinition, get_object_definition

from schema.schema import schema


def node_types() -> list[type[relay.Node]]:
    """The classes of the schema's types and interfaces that implement ``Node``."""
    names = re.findall(r"^(?:type|interface) (\w+) implements [^{]*\bNode\b", schema.as_str(), re.M)
    types = []
    for name in names:
        definition = schema.get_type_by_name(name)
        assert isinstance(definition, StrawberryObjectDefinition), name
        types.append(definition.origin)
    return types


def test_the_schema_has_node_types() -> None:
    names = {get_object_definition(t, strict=True).name for t in node_types()}
    assert {"User", "Event", "StatusChange", "Comment", "Notification"} <= names


@pytest.mark.parametrize("node_type", node_types(), ids=lambda t: t.__name__)
def test_each_node_type_declares_its_id(node_type: type[relay.Node]) -> None:
    # What strawberry-django asks for each id it resolves: without a NodeID annotation
    # this raises NodeIDAnnotationError (and strawberry-django falls back to the pk).
    assert super(node_type, node_type).resolve_id_attr() == "id"  # type: ignore[misc]
