"""Defects found in review, each pinned by the behaviour a user would have seen."""
from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
import time
from typing import Any, Callable, Iterator, List, Tuple

import numpy as np
import pytest

from smallest_sync import CertificateError, MemoryOutput, SmallestConnectionError, Speaker
from smallest_sync.emulator import Emulator
from smallest_sync.errors import ProtocolError
from smallest_sync.protocol import parse_frame

from .conftest import API_KEY, RecordingOutput


def test_an_utterance_queued_behind_long_speech_is_not_called_stalled(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    # It waits for the one ahead to finish playing; that is not a dead device.
    speaker = make_speaker(output=RecordingOutput(), timeout=0.5)
    speaker.say("one two three four five six seven")  # about 2.5 s
    assert speaker.speak("short").done


def test_keepalive_replies_never_end_a_request_early(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    # An old server: answers whitespace keepalives with a complete, echoes no ids.
    emulator.config.keepalive_reply = "complete"
    emulator.config.echo_external_ids = False
    output = MemoryOutput()
    speaker = make_speaker(output=output, keepalive_interval=0.01)
    for n in range(25):
        utterance = speaker.speak(f"Number {n} please.")
        assert utterance.duration > 0.5, f"utterance {n} ended before its audio"
    assert np.array_equal(output.samples(), np.concatenate([s.pcm for s in emulator.served if s.text.strip()]))


@contextlib.contextmanager
def serving(server: Any) -> Iterator[None]:
    """Run a test server's serve_forever() in a thread; shut it down and join it after."""
    worker = threading.Thread(target=server.serve_forever, name="test-server")
    worker.start()
    try:
        yield
    finally:
        server.shutdown()
        worker.join(5)


@contextlib.contextmanager
def speaking_to(port: int, *, timeout: float) -> Iterator[Speaker]:
    speaker = Speaker(API_KEY, base_url=f"ws://127.0.0.1:{port}", output=MemoryOutput(), timeout=timeout)
    try:
        yield speaker
    finally:
        speaker.close()


class _Redirector(socketserver.BaseRequestHandler):
    target = ""

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(f"HTTP/1.1 302 Found\r\nLocation: {self.target}\r\nContent-Length: 0\r\n\r\n".encode())


@pytest.fixture
def key_thief() -> Iterator[List[bytes]]:
    """A plain listener that records whatever reaches it."""
    stolen: List[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    stolen.append(conn.recv(65536))
                except OSError:
                    pass

    thread = threading.Thread(target=serve)
    thread.start()
    stolen.append(f"ws://127.0.0.1:{listener.getsockname()[1]}/steal".encode())
    yield stolen
    stop.set()
    thread.join(5)
    listener.close()


def test_redirects_are_not_followed_with_the_key(key_thief: List[bytes]) -> None:
    _Redirector.target = key_thief.pop(0).decode()
    with socketserver.TCPServer(("127.0.0.1", 0), _Redirector) as server:
        with serving(server), speaking_to(server.server_address[1], timeout=2) as speaker:
            with pytest.raises(SmallestConnectionError, match="(?i)redirect"):
                speaker.speak("Follow me.")
    assert not any(API_KEY.encode() in data for data in key_thief)


@pytest.mark.parametrize("raw", ['{"status":"chunk","data":{"audio":"AAAA\\u00e9"}}', "[" * 100000 + "]" * 100000])
def test_hostile_frames_are_protocol_errors_not_crashes(raw: str) -> None:
    with pytest.raises(ProtocolError):
        parse_frame(raw)


def test_close_during_a_connect_that_never_answers_returns_promptly() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts TCP, never answers the upgrade
    try:
        speaker = Speaker(API_KEY, base_url=f"ws://127.0.0.1:{silent.getsockname()[1]}", output=MemoryOutput(), timeout=8)
        handle = speaker.say("Anyone there?")
        began = time.monotonic()
        speaker.close()
        assert time.monotonic() - began < 3
        assert handle.wait(1) and handle.interrupted
    finally:
        silent.close()


def test_a_hostile_server_cannot_make_the_client_buffer_without_bound() -> None:
    from websockets.sync.server import serve

    from smallest_sync.connection import MAX_MESSAGE_BYTES

    def handler(connection: object) -> None:
        connection.recv()  # type: ignore[attr-defined]
        try:
            connection.send("x" * (MAX_MESSAGE_BYTES + 1024))  # type: ignore[attr-defined]
        except Exception:
            pass  # the client hung up on us, as it should

    with serve(handler, "127.0.0.1", 0) as server:
        with serving(server), speaking_to(server.socket.getsockname()[1], timeout=5) as speaker:
            with pytest.raises(SmallestConnectionError, match="over 16 MB"):
                speaker.speak("Send me everything.")


def test_wss_verifies_the_server_certificate(tmp_path: "os.PathLike[str]") -> None:
    import ssl
    import subprocess

    cert, key = str(tmp_path) + "/cert.pem", str(tmp_path) + "/key.pem"  # type: ignore[operator]
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    received: List[bytes] = []

    def serve_once() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                received.append(tls.recv(65536))
        except (ssl.SSLError, OSError):
            pass  # the client rejected our self-signed certificate

    thread = threading.Thread(target=serve_once)
    thread.start()
    try:
        speaker = Speaker(API_KEY, base_url=f"wss://127.0.0.1:{listener.getsockname()[1]}", output=MemoryOutput(), timeout=5)
        try:
            for _ in range(2):  # final: the second call does not knock again
                with pytest.raises(CertificateError, match="(?i)certificate"):
                    speaker.speak("Is this really you?")
        finally:
            speaker.close()
    finally:
        thread.join(10)
        listener.close()
    assert not any(API_KEY.encode() in data for data in received)


def test_sink_outputs_get_nothing_of_an_interrupted_utterance_after_interrupt(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.realtime_factor = 1.0  # still arriving, and being written, when interrupted
    writes: List[Tuple[float, int]] = []
    started = threading.Event()

    def sink(pcm: np.ndarray) -> None:
        writes.append((time.monotonic(), len(pcm)))
        started.set()

    speaker = make_speaker(output=sink)
    handle = speaker.say(" ".join(["written"] * 20))
    assert started.wait(5)
    speaker.interrupt()
    returned = time.monotonic()
    assert handle.wait(2) and handle.interrupted
    assert not [n for when, n in writes if when > returned]


def test_context_mode_waits_for_a_slow_server_to_start_each_fragment(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.first_chunk_delay = 0.8  # slower to start than the 0.5 s settle
    output = MemoryOutput()
    speaker = make_speaker(output=output, stream_mode="context")
    utterance = speaker.speak_stream(iter(["First part here. ", "Second part here. ", "Third part here."]))
    assert utterance.done and not utterance.interrupted
    assert np.array_equal(output.samples(), np.concatenate([s.pcm for s in emulator.served]))
    assert " ".join(s.text for s in emulator.served).split() == "First part here. Second part here. Third part here.".split()


def test_context_mode_keeps_the_socket_alive_through_a_long_pause_in_the_text(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.idle_timeout = 0.5

    def thinking_model() -> Iterator[str]:
        yield "Let me think. "
        assert emulator.wait_for(lambda emu: sum(1 for r in emu.received if (r.message or {}).get("type") == "ping") >= 4, 10)
        yield "Here is the answer."

    speaker = make_speaker(output=MemoryOutput(), stream_mode="context", keepalive_interval=0.15)
    utterance = speaker.speak_stream(thinking_model())
    assert utterance.done and not utterance.interrupted
    assert emulator.connections_opened == 1
