"""``check --deploy`` with Pulse's middleware: Django's security checks, still all run.

Django's deploy checks look for ``SecurityMiddleware``, ``XFrameOptionsMiddleware`` and
``CsrfViewMiddleware`` by their dotted paths in ``MIDDLEWARE``, and pass without a word
every check that needs one (HSTS, ``nosniff``, the SSL redirect, the CSRF cookie...)
when it is not there. Pulse runs subclasses of them (``backend.middleware``), so
settings silences Django's three "not in your MIDDLEWARE" warnings and this module
runs the same checks against ``MIDDLEWARE`` with each subclass named by its Django
class: a setting missing is reported as Django reports it (``security.W004``...), and
a middleware missing as ``pulse.W001``-``W003`` (``tests/backend/test_production_settings.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.core.checks.security import base, csrf
from django.test.utils import override_settings
from django.utils.module_loading import import_string

# Django's "is it in MIDDLEWARE" warnings, silenced in settings, and Pulse's ids for them.
PRESENCE_CHECKS: dict[str, Callable[..., list[CheckMessage]]] = {
    "pulse.W001": base.check_security_middleware,
    "pulse.W002": base.check_xframe_options_middleware,
    "pulse.W003": csrf.check_csrf_middleware,
}
SILENCED_DJANGO_CHECKS = ["security.W001", "security.W002", "security.W003"]
# Django's checks that pass when they do not find their middleware by its path.
GATED_CHECKS: Sequence[Callable[..., list[CheckMessage]]] = (
    base.check_sts,
    base.check_sts_include_subdomains,
    base.check_sts_preload,
    base.check_content_type_nosniff,
    base.check_ssl_redirect,
    base.check_xframe_deny,
    base.check_referrer_policy,
    base.check_cross_origin_opener_policy,
    csrf.check_csrf_cookie_secure,
)


def as_django_path(path: str) -> str:
    """A middleware's dotted path, or its Django parent's for a ``backend.middleware`` class."""
    middleware = import_string(path)
    if getattr(middleware, "__module__", "") != "backend.middleware":
        return path
    parent = next(c for c in middleware.__mro__[1:] if c.__module__.startswith("django."))
    return f"{parent.__module__}.{parent.__qualname__}"


@register(Tags.security, deploy=True)
def check_security_with_pulse_middleware(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """Django's middleware-dependent security checks, run on Django's names."""
    with override_settings(MIDDLEWARE=[as_django_path(p) for p in settings.MIDDLEWARE]):
        found = [m for check in GATED_CHECKS for m in check(app_configs)]
        for pulse_id, check in PRESENCE_CHECKS.items():
            found += [Warning(m.msg, hint=m.hint, id=pulse_id) for m in check(app_configs)]
    return found
