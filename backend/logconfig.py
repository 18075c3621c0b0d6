"""Structured logs: one JSON object per line (or readable console lines in development).

structlog renders every record, including stdlib ``logging`` calls from Django,
daphne, Twisted (routed by ``backend.server``) and Pulse, through its
``ProcessorFormatter``. Context bound with ``structlog.contextvars`` (``request_id``,
``connection_id``, ``user_id``) is added to every line logged in that task, and only
there: each request and each WebSocket connection runs in its own task.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LOG_FORMATS = ("json", "console")

# Scope extension in which Pulse's server (``backend.server``) hands an application
# the ids its access-log lines carry: ``{"request_id": ...}`` or ``{"connection_id": ...}``.
LOG_CONTEXT_EXTENSION = "pulse.log_context"

REDACTED = "[redacted]"
SECRET_KEY_PATTERN = re.compile(
    r"pass(word|wd)?$|token|secret|authori[sz]ation|cookie|session|csrf|api_?key", re.I
)


def new_id() -> str:
    """A fresh request or connection id."""
    return str(uuid.uuid4())


def scope_log_context(scope: MutableMapping[str, Any]) -> dict[str, str]:
    """The ids the server gave this ASGI connection for its log lines, if any."""
    extension = (scope.get("extensions") or {}).get(LOG_CONTEXT_EXTENSION)
    return dict(extension) if extension else {}


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Blank the value of any key that names a secret (token, password, cookie, ...)."""
    for key in event_dict:
        if key != "event" and SECRET_KEY_PATTERN.search(key):
            event_dict[key] = REDACTED
    return event_dict


def summarize_request(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Log a Django ``request`` passed in ``extra`` as its method and path only."""
    request = event_dict.get("request")
    if request is not None and hasattr(request, "method") and hasattr(request, "path"):
        event_dict["request"] = f"{request.method} {request.path}"
    return event_dict


def _shared_processors() -> list[Processor]:
    """What every record gets, from structlog or from stdlib ``logging``."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """Django's ``LOGGING``: everything to stderr through structlog's formatter."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    renderer: list[Processor]
    if log_format == "json":
        renderer = [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        # No local variables in tracebacks: they may hold tokens or passwords.
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(),
                exception_formatter=structlog.dev.RichTracebackFormatter(
                    show_locals=False, color_system="auto"
                ),
            )
        ]
    formatter = {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": [
            *_shared_processors(),
            structlog.stdlib.ExtraAdder(),
        ],
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            summarize_request,
            redact_secrets,
            *renderer,
        ],
    }
    # Django's own handlers (console when DEBUG, mail_admins) are replaced: its records
    # reach the root handler like everybody else's.
    quiet = {"handlers": [], "level": level, "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django": quiet, "django.server": quiet},
    }


def configure_structlog() -> None:
    """Send structlog's own loggers (django-structlog's) and Python's warnings through
    stdlib ``logging``."""
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
