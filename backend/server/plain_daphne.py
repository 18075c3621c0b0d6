"""Which server runs Pulse, and what it cannot guarantee under plain daphne.

``python -m backend.server`` (daphne plus Pulse's server extensions) marks the process;
``asgi.py`` calls :func:`warn_when_plain_daphne` once at start-up, so an operator who
runs ``daphne asgi:application`` learns what that command does not give.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

SERVER_MARK = "PULSE_SERVER"  # set by backend.server before daphne loads the application

logger = logging.getLogger("pulse.server")

PLAIN_DAPHNE_WARNING = (
    "Running under plain daphne: a client that stops reading is not cut off "
    "(PULSE_WS_MAX_UNSENT_BYTES does not hold for WebSocket, SSE or multipart "
    "streams), SIGTERM does not close sockets with 1001, and the access log is not "
    "structured. Run `python -m backend.server` (same arguments as daphne) for these."
)


def under_plain_daphne() -> bool:
    """Whether this process is daphne's own command, not ``python -m backend.server``."""
    if os.environ.get(SERVER_MARK) == "backend.server":
        return False
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return program.name == "daphne" or program.parent.name == "daphne"


def warn_when_plain_daphne() -> None:
    """Log :data:`PLAIN_DAPHNE_WARNING` once when served by plain daphne."""
    if under_plain_daphne():
        logger.warning(PLAIN_DAPHNE_WARNING)
