"""What a connection refuses to do, whatever the server: follow a redirect with the
key, trust a certificate it cannot verify, buffer a message without bound, or hold
up close() while a handshake hangs."""
from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
import time
from typing import Any, Iterator, List

import pytest

from smallest_sync import CertificateError, MemoryOutput, SmallestConnectionError, Speaker

from .conftest import API_KEY


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

    from smallest_sync.net.connection import MAX_MESSAGE_BYTES

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
