"""WebSocket text frames, encoded once and written to many sockets.

Pulse's server (``backend.server``) offers each WebSocket application an ASGI scope
extension, ``pulse.websocket.frames``, whose ``write`` callable takes bytes made of
complete server-to-client frames and puts them on that socket's transport as they are.
The fan-out encodes a frame once and writes the same bytes to every socket that gets
it, instead of passing each message through Channels, daphne and autobahn per socket.
Under any other server the extension is absent and messages go the usual ASGI way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

EXTENSION = "pulse.websocket.frames"
# Pulse's server also offers streaming HTTP responses a capped writer: ``write(bytes)``
# (``False`` once the client is gone or was dropped for not reading) and ``done()``.
HTTP_STREAM_EXTENSION = "pulse.http.stream"

FrameWriter = Callable[[bytes], None]


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame (RFC 6455 §5.2) carrying UTF-8 ``payload``."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


def http_stream_writer(scope: dict[str, Any]) -> dict[str, Any] | None:
    """The server's capped writer for a streaming HTTP response, if it offers one."""
    extension = (scope.get("extensions") or {}).get(HTTP_STREAM_EXTENSION)
    return extension if extension else None


def frame_writer(scope: dict[str, Any]) -> FrameWriter | None:
    """The server's raw frame writer for this WebSocket, if the server offers one."""
    extension = (scope.get("extensions") or {}).get(EXTENSION)
    return extension.get("write") if extension else None
