"""Pulse's server: daphne plus what plain daphne cannot give an ASGI application.

- ``daphne``: the server command (``python -m backend.server``, daphne's arguments) with a
  graceful SIGTERM, the cap on unsent bytes and the structured access log.
- ``extensions``: the ASGI scope extensions it offers (pre-encoded WebSocket frames, the
  capped HTTP stream writer) and how an application finds them; importable anywhere.
- ``plain_daphne``: the one start-up warning when plain ``daphne`` serves instead.

This module imports none of them: importing Twisted's reactor before daphne installs
its own would break the server.
"""
