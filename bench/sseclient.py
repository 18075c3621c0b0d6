"""A lean GraphQL-over-SSE client (``graphql-sse``, distinct connections mode).

One TCP connection per subscriber, raw HTTP/1.1 on loopback: the request goes out in
``connection_made``; the response's status line and headers, the chunked
transfer-encoding and the event stream are parsed straight out of ``data_received``
(an ``asyncio.Protocol``, like ``bench/wsclient.py``, and for the same reason: the load
generator shares the machine's cores with the server it measures, so a task and a
``StreamReader`` per subscriber would cost more than the parsing itself). Each event
(``event``, ``data``, ``id`` fields, per the HTML living standard's rules) goes to a
callback; comment lines (the server's keep-alives, ``:``) are counted and dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

EventCallback = Callable[[bytes, bytes, bytes | None], None]  # event name, data, id


class StreamError(ConnectionError):
    """The server did not answer with an event stream."""


class SSEClient(asyncio.Protocol):
    """One event-stream request; events go to ``on_event`` (or wait in ``next_event``)."""

    def __init__(
        self,
        host: str,
        port: int,
        target: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        loop = asyncio.get_running_loop()
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
        lines += ["Accept: text/event-stream", "Cache-Control: no-cache"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        self.open: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.status: int | None = None
        self.close_code: int | None = None  # like WebSocketClient's: always None here
        self.close_reason = ""
        self.comments = 0  # keep-alive comment lines received
        self.on_event: EventCallback | None = None
        self.on_close: Callable[[], None] | None = None
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()  # raw bytes not parsed yet (head or chunk framing)
        self._stream = bytearray()  # de-chunked event-stream bytes not parsed yet
        self._head_done = False
        self._chunked = False
        self._chunk_left = 0  # bytes of the current chunk still to come
        self._chunk_crlf = False  # the CRLF after a chunk's data is still to come
        self._remaining: int | None = None  # Content-Length left, if the body has one
        self._pending_cr = False
        self._early: list[tuple[bytes, bytes, bytes | None]] = []
        self._early_waiter: asyncio.Future[None] | None = None
        self._closing = False

    # asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._head_done and not self._read_head():
            return
        if self._chunked:
            self._read_chunks()
        else:
            body = bytes(self._buffer)
            self._buffer.clear()
            if self._remaining is not None:
                body = body[: self._remaining]
                self._remaining -= len(body)
            self._feed(body)
            if self._remaining == 0:
                self._end("response ended")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(exc or StreamError("connection closed before the response"))
        if not self.close_reason:
            self.close_reason = "closed by the load generator" if self._closing else "closed"
        self._finish()

    # Control ---------------------------------------------------------------------------

    def close(self) -> None:
        """End the stream the way an SSE client does: drop the connection."""
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    async def next_event(self) -> tuple[bytes, bytes, bytes | None]:
        """The next event, while ``on_event`` is not set (handshake-style use)."""
        while not self._early:
            if self.closed.done():
                raise ConnectionError(f"stream closed: {self.close_reason}")
            self._early_waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait(
                [self._early_waiter, self.closed], return_when=asyncio.FIRST_COMPLETED
            )
        return self._early.pop(0)

    # Parsing -------------------------------------------------------------------------

    def _read_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > 65536:
                self._fail_open("response head too long")
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        parts = head[0].split(" ", 2)
        try:
            self.status = int(parts[1])
        except (IndexError, ValueError):
            self._fail_open(f"bad status line {head[0]!r}")
            return False
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in head[1:])
        }
        content_type = headers.get("content-type", "")
        if self.status != 200 or not content_type.startswith("text/event-stream"):
            body = bytes(self._buffer[:300]).decode("utf8", "replace")
            self._fail_open(f"{head[0]} ({content_type}): {body}")
            return False
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if not self._chunked and "content-length" in headers:
            self._remaining = int(headers["content-length"])
        self._head_done = True
        self.open.set_result(None)
        return True

    def _fail_open(self, reason: str) -> None:
        self.close_reason = reason
        if not self.open.done():
            self.open.set_exception(StreamError(reason))
        self.abort()

    def _read_chunks(self) -> None:
        buffer = self._buffer
        position = 0
        size = len(buffer)
        while position < size:
            if self._chunk_left:
                take = min(self._chunk_left, size - position)
                self._feed(bytes(buffer[position : position + take]))
                position += take
                self._chunk_left -= take
                if self._chunk_left:
                    break
                self._chunk_crlf = True
            if self._chunk_crlf:
                if size - position < 2:
                    break
                position += 2
                self._chunk_crlf = False
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                break
            try:
                chunk_size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            except ValueError:
                self._end(f"bad chunk size line {bytes(buffer[position:line_end])[:40]!r}")
                return
            position = line_end + 2
            if chunk_size == 0:
                del buffer[:]
                self._end("response ended (last chunk)")
                return
            self._chunk_left = chunk_size
        del buffer[:position]

    def _feed(self, data: bytes) -> None:
        """Event-stream bytes, in order; dispatches every complete event."""
        if not data:
            return
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        if b"\r" in data:
            if data.endswith(b"\r"):
                data, self._pending_cr = data[:-1], True
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        stream = self._stream
        stream += data
        start = 0
        while True:
            end = stream.find(b"\n\n", start)
            if end < 0:
                break
            self._event(bytes(stream[start:end]))
            start = end + 2
        if start:
            del stream[:start]

    def _event(self, block: bytes) -> None:
        name, event_id = b"message", None
        data: list[bytes] = []
        named = False
        for line in block.split(b"\n"):
            if not line:
                continue
            if line[0] == 0x3A:  # ":": a comment (the server's keep-alive)
                self.comments += 1
                continue
            field, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name, named = value, True
            elif field == b"id":
                event_id = value
        if not data and not named:
            return  # only comments (or an id, or retry): nothing to dispatch
        payload = b"\n".join(data)
        if self.on_event is not None:
            self.on_event(name, payload, event_id)
        else:
            self._early.append((name, payload, event_id))
            if self._early_waiter is not None and not self._early_waiter.done():
                self._early_waiter.set_result(None)

    def _end(self, reason: str) -> None:
        """The server ended the response."""
        if not self.close_reason:
            self.close_reason = reason
        if self.transport is not None:
            self.transport.close()
        self._finish()

    def _finish(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
            if self.on_close is not None:
                self.on_close()
