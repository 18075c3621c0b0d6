"""The house shows the design: packages depend one way, and a kind of event is wired once."""

from __future__ import annotations

import ast
from pathlib import Path

from events.selectors import concrete_event_models
from schema.enums import EventKind
from schema.events import EVENT_TYPE_NAMES, EVENT_TYPES
from schema.schema import schema

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "events", "users", "schema")
# Who may import whom: the Django project's infrastructure at the bottom, the GraphQL
# surface on top (asgi.py, at the root, wires them together).
ALLOWED = {
    "backend": set(),
    "events": {"backend"},
    "users": {"backend", "events"},
    "schema": {"backend", "events", "users"},
}


def imported_packages(package: str) -> dict[str, set[str]]:
    """Each project package imported by a module of ``package``, with the importers."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_packages_import_each_other_one_way_only() -> None:
    for package in PACKAGES:
        imports = imported_packages(package)
        forbidden = {name: files for name, files in imports.items() if name not in ALLOWED[package]}
        assert forbidden == {}, f"{package} imports {forbidden}"


def test_every_kind_of_event_has_its_type_and_kind_from_one_registration() -> None:
    # Other tests define kinds of event of their own; these are the shipped ones.
    models = [model for model in concrete_event_models() if model.__module__ == "events.models"]
    assert {model.activity_kind for model in models} == set(EVENT_TYPE_NAMES)
    assert {member.value for member in EventKind} == set(EVENT_TYPE_NAMES)
    assert len(EVENT_TYPES) == len(models)
    for name in EVENT_TYPE_NAMES.values():
        assert schema.get_type_by_name(name) is not None
