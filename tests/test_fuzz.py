"""Random and truncated server frames: the parser raises only ProtocolError, and a live
reader thread survives all of them (an exception escaping it would fail the test)."""
from __future__ import annotations

import base64
import json
import queue
import threading
from typing import Iterator, List, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smallest_sync.net.connection import Connection, ConnectionClosed
from smallest_sync.errors import ProtocolError
from smallest_sync.net.protocol import PcmDecoder, parse_frame

VALID = [
    json.dumps({"status": "chunk", "request_id": "r", "data": {"audio": base64.b64encode(b"\x01\x02\x03").decode()}}),
    json.dumps({"status": "word_timestamp", "request_id": "r", "data": {"id": 0, "word": "hi", "start": 0.1, "end": 0.2}}),
    json.dumps({"status": "complete", "request_id": "r"}),
    json.dumps({"status": "error", "error": {"message": "no", "code": 1}}),
    json.dumps({"type": "pong"}),
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
frames = st.one_of(
    st.sampled_from(VALID).flatmap(lambda f: st.integers(0, len(f)).map(lambda n: f[:n])),  # truncated
    st.builds(json.dumps, json_values),
    st.builds(lambda status, data: json.dumps({"status": status, "data": data}),
              st.sampled_from(["chunk", "word_timestamp", "complete", "error", "??"]), json_values),
    st.text(max_size=60),
    st.binary(max_size=60),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames)
def test_the_parser_only_ever_raises_protocol_error(frame: Union[str, bytes]) -> None:
    try:
        event = parse_frame(frame)
    except ProtocolError:
        return
    audio = getattr(event, "audio", None)
    if audio is not None:
        for fmt in ("pcm", "wav", "ulaw", "alaw"):
            try:
                PcmDecoder(fmt).decode(audio)
            except ProtocolError:
                pass


@pytest.fixture(scope="module")
def frame_server() -> Iterator["queue.Queue[List[Union[str, bytes]]]"]:
    """A WebSocket server that sends each connection the next batch of frames, then closes."""
    from websockets.sync.server import serve

    batches: "queue.Queue[List[Union[str, bytes]]]" = queue.Queue()

    def handler(connection: object) -> None:
        for frame in batches.get(timeout=10):
            connection.send(frame)  # type: ignore[attr-defined]
        connection.close()  # type: ignore[attr-defined]

    with serve(handler, "127.0.0.1", 0) as server:
        worker = threading.Thread(target=server.serve_forever, name="fuzz-server")
        worker.start()
        batches.port = server.socket.getsockname()[1]  # type: ignore[attr-defined]
        yield batches
        server.shutdown()
        worker.join(5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(frames, min_size=1, max_size=12))
def test_a_reader_thread_survives_any_frames(frame_server: "queue.Queue[List[Union[str, bytes]]]",
                                             batch: List[Union[str, bytes]]) -> None:
    ended = threading.Event()
    seen: List[object] = []

    def handler(conn: Connection, event: object) -> None:
        seen.append(event)
        if isinstance(event, ConnectionClosed):
            ended.set()

    frame_server.put(batch)
    connection = Connection(f"ws://127.0.0.1:{frame_server.port}/", "sk_fuzz", handler=handler, timeout=5)  # type: ignore[attr-defined]
    connection.open()
    try:
        assert ended.wait(10), "the reader must report the end of the socket"
    finally:
        connection.close()
    assert len(seen) == len(batch) + 1  # one event per frame (parsed or ProtocolError), then the end
