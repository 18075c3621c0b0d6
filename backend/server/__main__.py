"""``python -m backend.server``: daphne with Pulse's server extensions."""

from backend.server.daphne import PulseCommandLineInterface

PulseCommandLineInterface.entrypoint()
