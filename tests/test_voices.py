"""``list_voices()``: the voice catalogue over real HTTP, from the emulator and from a
stub server that answers what the real service might (errors, garbage, redirects)."""
from __future__ import annotations

import http.server
import json
import threading
from typing import Callable, Iterator, List, Tuple

import pytest

from smallest_sync import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    ProtocolError,
    SmallestConnectionError,
    VoiceInfo,
    list_voices,
)
from smallest_sync.emulator import Emulator, EmulatorConfig
from smallest_sync.voices import voices_url

from .conftest import API_KEY
from .test_cli import closed_port

SECRET = "sk_do_not_show_me_0123"

Reply = Tuple[int, dict, bytes]  # status, headers, body


@pytest.fixture
def stub() -> Iterator[Callable[[List[Reply]], Tuple[str, List[dict]]]]:
    """An HTTP server on port 0 that gives the queued replies in order and records
    each request's path and headers. Shut down and joined after the test."""
    servers: List[http.server.ThreadingHTTPServer] = []
    threads: List[threading.Thread] = []

    def start(replies: List[Reply]) -> Tuple[str, List[dict]]:
        seen: List[dict] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                status, headers, body = replies.pop(0)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value.replace("PORT", str(self.server.server_address[1])))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, name="stub-http", daemon=True)
        thread.start()
        servers.append(server)
        threads.append(thread)
        return f"ws://127.0.0.1:{server.server_address[1]}", seen

    yield start
    for server, thread in zip(servers, threads):
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_emulators_catalogue_as_typed_records(emulator: Emulator) -> None:
    voices = list_voices(API_KEY, base_url=emulator.base_url)
    meher = next(v for v in voices if v.id == "meher")
    assert meher == VoiceInfo(id="meher", name="Meher", gender="female", accent="indian", age="young",
                              languages=("english", "hindi"), emotions=("happy", "calm"),
                              usecases=("conversational", "customer_support"))
    assert {"liam", "avery", "sophia"} <= {v.id for v in voices}


def test_each_model_asks_its_own_pool_with_the_key_as_bearer(emulator: Emulator) -> None:
    list_voices(API_KEY, model="lightning_v3.1_pro", base_url=emulator.base_url)
    list_voices(API_KEY, model="lightning_v3.1", base_url=emulator.base_url)
    paths = [h.path for h in emulator.handshakes]
    assert paths == ["/waves/v1/lightning-v3.1-pro/get_voices", "/waves/v1/lightning-v3.1/get_voices"]
    assert all(h.headers["authorization"] == f"Bearer {API_KEY}" for h in emulator.handshakes)


def test_the_key_comes_from_the_environment(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMALLEST_API_KEY", API_KEY)
    assert list_voices(base_url=emulator.base_url)
    monkeypatch.delenv("SMALLEST_API_KEY")
    with pytest.raises(ConfigurationError, match="SMALLEST_API_KEY"):
        list_voices(base_url=emulator.base_url)


def test_a_refused_key_is_an_authentication_error_without_the_key() -> None:
    with Emulator(EmulatorConfig(refuse_auth=True)) as emulator:
        with pytest.raises(AuthenticationError) as caught:
            list_voices(SECRET, base_url=emulator.base_url)
    assert caught.value.status_code == 401
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


def test_a_closed_port_is_a_connection_error() -> None:
    with pytest.raises(SmallestConnectionError, match="cannot fetch"):
        list_voices(API_KEY, base_url=f"ws://127.0.0.1:{closed_port()}", timeout=5)


def test_a_server_error_is_an_api_error_with_its_message(stub: Callable[..., Tuple[str, List[dict]]]) -> None:
    body = json.dumps({"error": "Internal", "message": "catalogue is down"}).encode()
    base_url, _ = stub([(500, {"Content-Type": "application/json"}, body)])
    with pytest.raises(APIError, match="catalogue is down") as caught:
        list_voices(API_KEY, base_url=base_url)
    assert caught.value.code == "500"


def test_a_server_that_echoes_the_key_does_not_get_it_shown(stub: Callable[..., Tuple[str, List[dict]]]) -> None:
    base_url, _ = stub([(403, {}, json.dumps({"message": f"bad key {SECRET}"}).encode())])
    with pytest.raises(AuthenticationError) as caught:
        list_voices(SECRET, base_url=base_url)
    assert caught.value.status_code == 403 and SECRET not in str(caught.value)


@pytest.mark.parametrize("body", [b"<html>not json</html>", b'{"voices": 3}', b'{"voices": [{"displayName": "x"}]}'])
def test_an_answer_that_is_not_the_catalogue_is_a_protocol_error(
        stub: Callable[..., Tuple[str, List[dict]]], body: bytes) -> None:
    base_url, _ = stub([(200, {}, body)])
    with pytest.raises(ProtocolError):
        list_voices(API_KEY, base_url=base_url)


def test_missing_tags_are_none_or_empty(stub: Callable[..., Tuple[str, List[dict]]]) -> None:
    body = b'{"voices": [{"voiceId": "x1"}, {"voiceId": "x2", "tags": {"language": "hindi"}}]}'
    base_url, _ = stub([(200, {}, body)])
    assert list_voices(API_KEY, base_url=base_url) == [
        VoiceInfo(id="x1", name="x1"), VoiceInfo(id="x2", name="x2", languages=("hindi",))]


def test_redirects_are_not_followed_so_the_key_stays_put(stub: Callable[..., Tuple[str, List[dict]]]) -> None:
    target, target_seen = stub([(200, {}, b'{"voices": []}')])
    base_url, _ = stub([(302, {"Location": target.replace("ws://", "http://") + "/elsewhere"}, b"")])
    with pytest.raises(APIError, match="redirects are not followed"):
        list_voices(SECRET, base_url=base_url)
    assert target_seen == []


def test_urls_follow_the_socket_rules() -> None:
    assert voices_url("wss://api.smallest.ai", "lightning_v3.1_pro") == \
        "https://api.smallest.ai/waves/v1/lightning-v3.1-pro/get_voices"
    assert voices_url("ws://127.0.0.1:8080/", "lightning_v3.1") == "http://127.0.0.1:8080/waves/v1/lightning-v3.1/get_voices"
    with pytest.raises(ConfigurationError, match="unencrypted"):
        voices_url("ws://example.com", "lightning_v3.1")
    assert voices_url("ws://example.com", "lightning_v3.1", allow_insecure=True).startswith("http://example.com/")
    with pytest.raises(ConfigurationError, match="model"):
        list_voices(API_KEY, model="lightning_v9")
