"""A lean WebSocket client (RFC 6455) for thousands of benchmark subscribers.

The load generator shares the machine's 2 cores with the server it measures, so its
cost per received frame matters: with the ``websockets`` library's generator-based
parser and its per-message queue, reading 1,000,000 frames took more CPU than the
server spent sending them. This client is an ``asyncio.Protocol`` that parses frames
straight out of ``data_received`` and hands each text payload (bytes) to a callback:
enough for a subscriber (handshake with one subprotocol, masked text frames out,
ping answered with pong, close handshake), and nothing else (no extensions).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x8, 0x9, 0xA, 0x0


class HandshakeError(ConnectionError):
    """The server did not upgrade the connection as asked."""


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """One client-to-server frame: FIN set, payload masked with a random key."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    key = os.urandom(4)
    repeated = (key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        size, "big"
    )
    return header + key + masked


class WebSocketClient(asyncio.Protocol):
    """One client WebSocket; text payloads go to ``on_text`` (or wait in ``next_text``)."""

    def __init__(self, host: str, port: int, path: str, subprotocol: str) -> None:
        loop = asyncio.get_running_loop()
        self.request_line = (host, port, path, subprotocol)
        self.key = base64.b64encode(os.urandom(16))
        self.open: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        self.close_reason = ""
        self.on_text: Callable[[bytes], None] | None = None
        self.on_close: Callable[[], None] | None = None
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self._fragments: list[bytes] = []
        self._early: list[bytes] = []  # text received before ``on_text`` was set
        self._early_waiter: asyncio.Future[None] | None = None
        self._closing = False  # this side sent a close frame first

    # asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host, port, path, subprotocol = self.request_line
        transport.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded and not self._read_handshake():
            return
        self._read_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(exc or HandshakeError("connection closed during handshake"))
        self._finish()

    # Sending -----------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(masked_frame(TEXT, text.encode()))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake; ``closed`` is done once the server answered
        with its close frame (or the connection went)."""
        if self.transport is not None and not self.transport.is_closing() and not self._closing:
            self._closing = True
            self.transport.write(masked_frame(CLOSE, struct.pack("!H", code)))

    async def next_text(self) -> bytes:
        """The next text payload, for the handshake phase (before ``on_text`` is set)."""
        while not self._early:
            if self.closed.done():
                raise ConnectionError(f"closed: {self.close_code} {self.close_reason}")
            self._early_waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait(
                [self._early_waiter, self.closed], return_when=asyncio.FIRST_COMPLETED
            )
        return self._early.pop(0)

    # Parsing -------------------------------------------------------------------------

    def _read_handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).decode("latin1").split("\r\n")
        del self._buffer[: end + 4]
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head[1:])
        }
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest()).decode()  # noqa: S324
        if not head[0].startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != accept:
            self.open.set_exception(HandshakeError(head[0]))
            self.abort()
            return False
        self._upgraded = True
        self.open.set_result(None)
        return True

    def _read_frames(self) -> None:
        buffer = self._buffer
        position = 0
        while len(buffer) - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            size, header = second & 0x7F, 2
            if size == 126:
                if len(buffer) - position < 4:
                    break
                (size,) = struct.unpack_from("!H", buffer, position + 2)
                header = 4
            elif size == 127:
                if len(buffer) - position < 10:
                    break
                (size,) = struct.unpack_from("!Q", buffer, position + 2)
                header = 10
            if len(buffer) - position < header + size:
                break
            payload = bytes(buffer[position + header : position + header + size])
            position += header + size
            self._frame(first & 0x0F, bool(first & 0x80), payload)
        del buffer[:position]

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode in (TEXT, CONTINUATION):
            if not fin:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments = []
            if self.on_text is not None:
                self.on_text(payload)
            else:
                self._early.append(payload)
                if self._early_waiter is not None and not self._early_waiter.done():
                    self._early_waiter.set_result(None)
        elif opcode == PING and self.transport is not None:
            self.transport.write(masked_frame(PONG, payload))
        elif opcode == CLOSE:
            if len(payload) >= 2:
                (self.close_code,) = struct.unpack_from("!H", payload)
                self.close_reason = payload[2:].decode("utf8", "replace")
            else:
                self.close_code = 1005
            if self.transport is not None and not self.transport.is_closing():
                if not self._closing:  # the server's close: echo it; else it is the echo
                    self.transport.write(masked_frame(CLOSE, payload[:2]))
                self.transport.close()
            self._finish()

    def _finish(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
            if self.on_close is not None:
                self.on_close()
