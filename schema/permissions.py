"""Permission extensions answering with the contract's error codes."""

from __future__ import annotations

from typing import NoReturn

from strawberry_django.permissions import IsAuthenticated

from schema.context import Info
from schema.errors import unauthenticated


class IsSignedIn(IsAuthenticated):
    """strawberry-django's ``IsAuthenticated``, failing with ``UNAUTHENTICATED``."""

    def handle_no_permission(self, exception: BaseException, *, info: Info) -> NoReturn:
        raise unauthenticated() from exception
