"""GraphQL enums of the contract: the models' own choices, and the kinds of event.

``Visibility``, ``ActivityKind`` and ``Verb`` are the ``TextChoices`` of
``events.models`` exposed as they are; ``EventKind`` is derived from the concrete
``Event`` subclasses, so a new kind of event appears in it by itself.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import strawberry

from events import models
from events.selectors import concrete_event_models

# strawberry.enum marks the class itself and returns it: these are the models' classes.
Visibility = models.Visibility
ActivityKind = models.ActivityKind
Verb = models.Verb
for choices in (Visibility, ActivityKind, Verb):
    strawberry.enum(choices, name=choices.__name__)

if TYPE_CHECKING:
    EventKind = models.ActivityKind  # the kinds of activity that concrete events publish
else:
    EventKind = strawberry.enum(
        enum.Enum(
            "EventKind",
            {model.activity_kind: model.activity_kind for model in concrete_event_models()},
        ),
        name="EventKind",
    )
