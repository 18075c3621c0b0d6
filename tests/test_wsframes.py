"""Pre-encoded WebSocket text frames: every length encoding, checked against autobahn."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from autobahn.websocket.protocol import WebSocketProtocol

from backend.server.extensions import frame_writer, text_frame
from tests.helpers import split_text_frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_matches_autobahn_and_splits_back(size: int) -> None:
    payload = b"x" * size
    frame = text_frame(payload)

    class Recorder(WebSocketProtocol):
        def __init__(self) -> None:
            self.sent: list[bytes] = []
            self.state = WebSocketProtocol.STATE_OPEN
            self.logFrames = False
            self.trackedTimings = None  # type: ignore[assignment]
            self.utf8validateOutgoing = False
            self.maskServerFrames = False
            self.factory = SimpleNamespace(isServer=True)
            self.trafficStats = SimpleNamespace(outgoingWebSocketFrames=0)  # type: ignore[assignment]

        def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
            self.sent.append(data)

    recorder = Recorder()
    recorder.sendFrame(opcode=1, payload=payload)
    assert frame == b"".join(recorder.sent)
    joined = frame + text_frame(b"{}") + frame
    assert split_text_frames(joined) == [payload, b"{}", payload]


def test_frame_writer_comes_from_the_scope_extension() -> None:
    def write(frames: bytes) -> None:
        pass

    assert frame_writer({"extensions": {"pulse.websocket.frames": {"write": write}}}) is write
    assert frame_writer({"type": "websocket"}) is None
