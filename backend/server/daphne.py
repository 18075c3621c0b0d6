"""Pulse's server command: daphne, plus a graceful SIGTERM and a cap on unsent bytes.

Run it exactly like daphne (same arguments)::

    python -m backend.server -b 0.0.0.0 -p 8000 asgi:application

What it adds to daphne:

- **Graceful stop.** On SIGTERM/SIGINT it stops accepting connections, lets in-flight
  HTTP requests finish (up to ``PULSE_SHUTDOWN_GRACE_SECONDS``), closes every
  WebSocket with 1001 (going away) and only then cancels what is left.
- **Slow consumers.** Twisted buffers whatever a client does not read, without limit.
  Each WebSocket registers a streaming producer on its transport, so Twisted tells it
  when the kernel and Twisted buffers are full; frames written while paused are
  counted, and past ``PULSE_WS_MAX_UNSENT_BYTES`` the socket gets no more data and is
  closed with 1013 (try again later) and a reason saying to resume from the last cursor.
- **Message limit with a reason.** Client messages over ``PULSE_WS_MAX_MESSAGE_BYTES``
  and frames breaking RFC 6455 get a close frame (1009, 1002) before the connection is
  dropped, so the client learns why.
- **Structured access log.** daphne's access log goes through ``logging`` (so it is
  JSON with ``LOG_FORMAT=json``), each line with the ``request_id`` or ``connection_id``
  the application's own lines carry (``backend.logconfig``). Twisted's own log is
  daphne's choice: dropped, or with ``--verbosity 2`` sent to ``logging`` as well.
- **Streams with a cap.** SSE and multipart responses write through the
  ``pulse.http.stream`` extension, with the same cap on unsent bytes as WebSockets.
- **Pre-encoded frames.** Each WebSocket scope carries the ``pulse.websocket.frames``
  extension (``backend.server.extensions``): the activity fan-out writes one encoded frame to
  thousands of sockets without a trip through Channels, daphne and autobahn for each,
  straight to the socket when nothing is queued for it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import IO, Any

import daphne.cli
import daphne.server
from daphne.access import AccessLogGenerator
from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet import defer, reactor, task
from twisted.web import http

from backend.logconfig import LOG_CONTEXT_EXTENSION, new_id
from backend.metrics import DROPPED_UNSENT_BYTES
from backend.server import extensions as server_extensions
from backend.server.plain_daphne import SERVER_MARK

logger = logging.getLogger("pulse.server")
access_logger = logging.getLogger("daphne.access")

GOING_AWAY = 1001
SLOW_CONSUMER_CLOSE_CODE = 1013
SLOW_CONSUMER_REASON = "slow consumer: resubscribe with after set to your last cursor"
SLOW_CONSUMER_DROP_AFTER_SECONDS = 30.0  # a client that never reads again is dropped


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value else default


def send_now(transport: Any, data: bytes) -> int:
    """Send straight to the socket when nothing is queued before ``data``.

    Twisted's ``write`` always buffers and registers the socket with the event loop for
    writability (two ``epoll_ctl`` calls and selector bookkeeping per write), which
    dominated the fan-out's profile. When its buffers are empty, a direct ``send`` keeps
    the order and usually takes everything; the caller ``write``s what it did not take.
    Returns how many bytes were sent.
    """
    if (
        getattr(transport, "TLS", True)
        or not transport.connected
        or transport.disconnecting
        or transport._writeDisconnected
        or transport._tempDataBuffer
        or len(transport.dataBuffer) > transport.offset
    ):
        return 0
    sent = transport.writeSomeData(data)
    return sent if isinstance(sent, int) else 0


_request_write = http.Request.write  # looked up once: ``http`` is a deprecation proxy


class _SendBacklog:
    """Streaming producer telling its WebSocket whether the transport is backed up."""

    def __init__(self) -> None:
        self.paused = False
        self.unsent_bytes = 0

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.unsent_bytes = 0

    def stopProducing(self) -> None:
        self.paused = True


class PulseWebSocketProtocol(WebSocketProtocol):
    """daphne's WebSocket protocol, closing clients that stop reading."""

    max_unsent_bytes = int(_env_number("PULSE_WS_MAX_UNSENT_BYTES", 4 * 1024 * 1024))
    connection_id: str | None = None  # set by PulseServer.create_application

    def onOpen(self) -> None:
        self.backlog = _SendBacklog()
        self.closing_slow_consumer = False
        # The HTTP channel this connection was upgraded from is still registered as the
        # transport's producer; after the upgrade the backlog takes its place.
        if getattr(self.transport, "producer", None) is not None:
            self.transport.unregisterProducer()
        self.transport.registerProducer(self.backlog, True)
        super().onOpen()

    def serverSend(self, content: Any, binary: bool = False) -> None:
        backlog: _SendBacklog | None = getattr(self, "backlog", None)
        if backlog is not None and backlog.paused:
            if self.closing_slow_consumer:
                return
            backlog.unsent_bytes += len(content)
            if backlog.unsent_bytes > self.max_unsent_bytes:
                self._close_slow_consumer()
                return
        super().serverSend(content, binary)

    def write_frames(self, frames: bytes) -> None:
        """Write complete, pre-encoded text frames (``backend.server.extensions``) to the client.

        The same checks as a message sent through daphne: nothing once closing, and the
        slow-consumer guard counts the bytes while the transport is backed up. The frames
        are uncompressed, which RFC 7692 allows even where permessage-deflate was agreed
        (daphne does not offer it).
        """
        if self.state != self.STATE_OPEN or self.closing_slow_consumer:
            return
        backlog = self.backlog
        if backlog.paused:
            backlog.unsent_bytes += len(frames)
            if backlog.unsent_bytes > self.max_unsent_bytes:
                self._close_slow_consumer()
                return
        sent = 0 if self.send_queue else send_now(self.transport, frames)
        self.transport.write(frames[sent:])

    def _close_slow_consumer(self) -> None:
        self.closing_slow_consumer = True
        DROPPED_UNSENT_BYTES.inc()
        logger.warning(
            "Closing slow WebSocket consumer %s",
            self.client_addr,
            extra={"connection_id": getattr(self, "connection_id", None)},
        )
        # The close frame queues behind what the client has not read yet; give it time
        # to read up to it, then drop the connection.
        self.closeHandshakeTimeout = SLOW_CONSUMER_DROP_AFTER_SECONDS
        self.sendCloseFrame(
            code=SLOW_CONSUMER_CLOSE_CODE, reasonUtf8=SLOW_CONSUMER_REASON.encode(), isReply=False
        )
        # Stop the application's work for this socket now, not when the client goes.
        if hasattr(self, "application_queue"):
            self.application_queue.put_nowait(
                {"type": "websocket.disconnect", "code": SLOW_CONSUMER_CLOSE_CODE}
            )
            self.muted = True  # daphne sends no second disconnect from onClose


class HTTPStreamWriter:
    """Writes a streaming HTTP response's chunks (SSE, multipart), with the same cap on
    unsent bytes as WebSockets: past ``PULSE_WS_MAX_UNSENT_BYTES`` while the client is
    not reading, the connection is dropped (the client resumes from its last cursor).

    It registers a streaming producer on the request (Twisted's public API), so the
    transport says when its buffers are full. Offered to the application as the
    ``pulse.http.stream`` scope extension (``backend.server.extensions``).
    """

    def __init__(self, request: Any, max_unsent_bytes: int) -> None:
        self.request = request
        self.max_unsent_bytes = max_unsent_bytes
        self.backlog: _SendBacklog | None = None
        self.dropped = False

    def write(self, data: bytes) -> bool:
        """Send one chunk; ``False`` once the client is gone or was dropped."""
        request = self.request
        if self.dropped or request.finished or request.channel is None:
            return False
        if self.backlog is None:
            self.backlog = _SendBacklog()
            request.registerProducer(self.backlog, True)
        if self.backlog.paused:
            self.backlog.unsent_bytes += len(data)
            if self.backlog.unsent_bytes > self.max_unsent_bytes:
                self._drop()
                return False
        if not request.chunked:  # the first chunk (with the headers), or HTTP/1.0
            _request_write(request, data)
            return True
        # Later chunks: framed here (RFC 9112 chunked coding, as Twisted frames them) and
        # sent straight to the socket when nothing is queued before them.
        chunk = b"%x\r\n%b\r\n" % (len(data), data)
        transport = request.channel.transport
        transport.write(chunk[send_now(transport, chunk) :])
        return True

    def done(self) -> None:
        """The response ends: let the connection serve its next request."""
        if self.backlog is not None and self.request.producer is not None:
            self.request.unregisterProducer()

    def _drop(self) -> None:
        self.dropped = True
        DROPPED_UNSENT_BYTES.inc()
        logger.warning("Dropping slow HTTP stream consumer %s", self.request.client_addr)
        self.done()
        self.request.transport.abortConnection()


class PulseWebSocketFactory(WebSocketFactory):
    protocol = PulseWebSocketProtocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # On a protocol violation or an oversized message, send a close frame with its
        # code (1002, 1009) before dropping the connection, so the client learns why.
        self.setProtocolOptions(failByDrop=False)


class PulseServer(Server):
    """daphne's ``Server`` with a graceful stop and the slow-consumer guard."""

    grace_seconds = _env_number("PULSE_SHUTDOWN_GRACE_SECONDS", 10.0)

    def run(self) -> None:
        self.ports: list[Any] = []
        # autobahn closes a socket sending a larger message with 1009 (message too big)
        # as soon as the frame header announces it, before buffering the payload.
        max_message = int(_env_number("PULSE_WS_MAX_MESSAGE_BYTES", 1024 * 1024))
        self.websocket_max_message_size = self.websocket_max_frame_size = max_message
        # daphne builds its WebSocket factory inside run(); point it at ours.
        daphne.server.WebSocketFactory = PulseWebSocketFactory  # type: ignore[misc]
        super().run()

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        extensions = scope.setdefault("extensions", {})
        if isinstance(protocol, PulseWebSocketProtocol):
            extensions[server_extensions.EXTENSION] = {"write": protocol.write_frames}
            protocol.connection_id = new_id()
            ids = {"connection_id": protocol.connection_id}
        else:
            ids = {"request_id": new_id()}
            writer = HTTPStreamWriter(protocol, PulseWebSocketProtocol.max_unsent_bytes)
            extensions[server_extensions.HTTP_STREAM_EXTENSION] = {
                "write": writer.write,
                "done": writer.done,
            }
        # The application logs with these ids, and so do this connection's access lines.
        extensions[LOG_CONTEXT_EXTENSION] = ids
        protocol.server = _ConnectionView(self, ids)
        return super().create_application(protocol, scope)

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)

    def kill_all_applications(self) -> defer.Deferred[Any]:
        """daphne's shutdown hook, run only after the connections were drained."""
        drained = defer.ensureDeferred(self.drain())
        drained.addCallback(lambda _: Server.kill_all_applications(self))
        return drained

    async def drain(self) -> None:
        """Stop listening, finish in-flight HTTP, end live streams, close WebSockets with
        1001. A live HTTP stream (SSE, multipart) never finishes by itself: it is closed,
        and its client resumes from its last cursor (``EventSource`` does so by itself)."""
        for port in self.ports:
            port.stopListening()
        streams = self._live_http_streams()
        for protocol in streams:
            protocol.transport.loseConnection()
        deadline = time.monotonic() + self.grace_seconds
        while self._busy_http(streams) and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.05)
        sockets = [ws for ws in self._websockets() if ws.state == ws.STATE_OPEN]
        logger.info("Shutting down: closing %d WebSockets with 1001", len(sockets))
        for protocol in sockets:
            # autobahn's public sendClose only allows 1000 and 3000-4999.
            protocol.sendCloseFrame(code=GOING_AWAY, isReply=False)
        # Wait for the closing handshakes, so the close frames are not lost at exit.
        close_deadline = time.monotonic() + 2.0
        while self._websockets() and time.monotonic() < close_deadline:
            await task.deferLater(reactor, 0.05)

    def _live_http_streams(self) -> list[Any]:
        """HTTP requests that are live streams: SSE, or multipart subscriptions."""
        return [
            protocol
            for protocol, details in self.connections.items()
            if not isinstance(protocol, WebSocketProtocol)
            and "disconnected" not in details
            and is_live_stream(protocol)
        ]

    def _busy_http(self, streams: list[Any]) -> bool:
        return any(
            not isinstance(protocol, WebSocketProtocol)
            and protocol not in streams
            and "disconnected" not in details
            and details.get("application_instance") is not None
            and not details["application_instance"].done()
            for protocol, details in self.connections.items()
        )

    def _websockets(self) -> list[WebSocketProtocol]:
        """WebSockets whose TCP connection is still up."""
        return [
            protocol
            for protocol, details in self.connections.items()
            if isinstance(protocol, WebSocketProtocol) and "disconnected" not in details
        ]


def is_live_stream(request: Any) -> bool:
    """Whether a Twisted HTTP request is one of the live transports' streams."""
    path = (request.path or b"").rstrip(b"/")
    if path == b"/graphql/stream":
        return True
    accept = request.getHeader(b"accept") or b""
    return path == b"/graphql" and b"multipart/mixed" in accept


class _ConnectionView:
    """The server as one connection's protocol sees it: its access lines carry its id."""

    def __init__(self, server: Server, ids: dict[str, str]) -> None:
        self._server, self._ids = server, ids

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)

    def log_action(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        self._server.log_action(protocol, action, {**details, **self._ids})


class StructuredAccessLog:
    """daphne's access log as ``logging`` records (logger ``daphne.access``).

    HTTP lines: ``method``, ``path`` (without the query string, which may hold secrets),
    ``status``, ``size``, ``duration_ms``, ``client`` and ``request_id``; WebSocket lines
    (``websocket_connecting``, ``_connected``, ``_rejected``, ``_disconnected``):
    ``path``, ``client`` and ``connection_id``.
    """

    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        fields: dict[str, Any] = {
            "path": str(details.get("path", "")).split("?", 1)[0],
            "client": details.get("client"),
        }
        if protocol == "http" and action == "complete":
            event = "http_request"
            fields |= {
                "method": details.get("method"),
                "status": details.get("status"),
                "size": details.get("size"),
                "duration_ms": round(float(details.get("time_taken") or 0) * 1000, 3),
                "request_id": details.get("request_id"),
            }
        elif protocol == "websocket":
            event = f"websocket_{action}"
            fields["connection_id"] = details.get("connection_id")
        else:
            return
        access_logger.info(event, extra=fields)


def access_log(stream: IO[str]) -> Any:
    """daphne's access logger: structured when it would go to stdout, else as daphne's."""
    return StructuredAccessLog() if stream is sys.stdout else AccessLogGenerator(stream)


class PulseCommandLineInterface(CommandLineInterface):
    server_class = PulseServer

    def run(self, args: list[str]) -> None:
        os.environ[SERVER_MARK] = "backend.server"  # asgi.py: no plain-daphne warning
        # daphne builds its access logger inside run(); point it at ours.
        daphne.cli.AccessLogGenerator = access_log  # type: ignore[attr-defined,misc]
        super().run(args)
