"""Tests of the Waves emulator, over real loopback sockets with a real client.

The client is ``websockets.sync.client``; nothing is mocked. Times are
multiples of ``UNIT`` (scale with ``EMULATOR_TEST_TIME_UNIT`` on slow machines).
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from smallest_sync.emulator import (
    TONE_PALETTE,
    WORD_TIMESTAMP_VOICES,
    Emulator,
    EmulatorConfig,
    alaw_decode,
    alaw_encode,
    join_fragments,
    synthesize,
    tone_frequency,
    ulaw_decode,
    ulaw_encode,
)

UNIT = 0.05 * float(os.environ.get("EMULATOR_TEST_TIME_UNIT", "1"))
KEY = "sk_test_emulator"
AUTH = {"Authorization": f"Bearer {KEY}"}
REPO = Path(__file__).resolve().parent.parent
Frame = Dict[str, Any]

pytestmark = pytest.mark.timeout(30)

# Loopback tests want no proxy (websockets >= 15 honours proxy environment
# variables) and no client pings (>= 14); older clients lack both options.
NO_PROXY: Dict[str, Any] = {
    key: None for key in ("proxy", "ping_interval") if key in inspect.signature(connect).parameters
}


# -- helpers -------------------------------------------------------------------


def fast_config(**overrides: Any) -> EmulatorConfig:
    """Unpaced audio, immediate completes: the quick default for tests."""
    base: Dict[str, Any] = dict(realtime_factor=0, first_chunk_delay=0, default_complete_backoff_ms=0)
    base.update(overrides)
    return EmulatorConfig(**base)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(fast_config(), api_key=KEY) as emulator:
        yield emulator


def open_ws(emulator: Emulator, query: str = "", headers: Optional[Dict[str, str]] = None) -> ClientConnection:
    ws: ClientConnection = connect(emulator.live_url + query, open_timeout=5, close_timeout=1,
                                   additional_headers=AUTH if headers is None else headers, **NO_PROXY)
    return ws


def request(text: str, **fields: Any) -> str:
    message: Dict[str, Any] = {"text": text, "voice_id": "meher", "model": "lightning_v3.1",
                               "language": "en", "sample_rate": 24000}
    message.update(fields)
    return json.dumps(message)


def recv(ws: ClientConnection, timeout: float = 5.0) -> Frame:
    raw = ws.recv(timeout=timeout)
    frame = json.loads(raw)
    assert isinstance(frame, dict)
    return frame


def collect(ws: ClientConnection, until: Tuple[str, ...] = ("complete", "error"), timeout: float = 5.0) -> List[Frame]:
    """Frames up to and including the first whose status is in ``until``."""
    frames: List[Frame] = []
    while True:
        frames.append(recv(ws, timeout))
        if frames[-1].get("status") in until:
            return frames


def audio_bytes(frames: List[Frame]) -> bytes:
    return b"".join(base64.b64decode(f["data"]["audio"]) for f in frames if f.get("status") == "chunk")


def pcm_of(frames: List[Frame]) -> np.ndarray:
    return np.frombuffer(audio_bytes(frames), dtype="<i2")


def error_text(frame: Frame) -> str:
    return str(frame["message"] if "message" in frame else frame["error"]["message"])


def expect_silence(ws: ClientConnection, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        ws.recv(timeout=seconds)


def http_get(url: str, headers: Optional[Dict[str, str]] = None) -> Tuple[int, str, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read()


# -- the tone engine -------------------------------------------------------------


def test_tone_engine_follows_its_contract() -> None:
    text = "Hello, $100  world"
    pcm, words = synthesize(text, sample_rate=16000)
    assert pcm.dtype == np.int16
    assert [w for w, _, _ in words] == ["Hello,", "$100", "world"]
    bursts = [round((0.12 + 0.045 * len(w)) * 16000) for w, _, _ in words]
    assert len(pcm) == round(0.03 * 16000) + sum(bursts) + 3 * round(0.06 * 16000)
    assert words[0][1] == 0.03 and words[0][2] == round((480 + bursts[0]) / 16000, 3)
    assert np.abs(pcm).max() <= round(0.3 * 32767)
    assert pcm[0] == 0 and pcm[480] == 0  # silent lead-in, burst starts at phase 0 and faded
    spectrum = np.abs(np.fft.rfft(pcm.astype(float)))
    peak_hz = np.argmax(spectrum) * 16000 / len(pcm)
    assert abs(peak_hz - tone_frequency(text)) < 5
    assert tone_frequency(text) in TONE_PALETTE and len(TONE_PALETTE) == 16
    fast, fast_words = synthesize(text, sample_rate=16000, speed=2.0)
    assert abs(len(fast) - (480 + (len(pcm) - 480) / 2)) < 8 and fast_words[1][1] < words[1][1]
    silent, none = synthesize(" \n\t ")
    assert len(silent) == 0 and none == []
    again, _ = synthesize(text, sample_rate=16000)
    assert np.array_equal(pcm, again)


def test_g711_codecs_match_reference_values() -> None:
    assert ulaw_encode(np.zeros(1, np.int16)) == b"\xff" and alaw_encode(np.zeros(1, np.int16)) == b"\xd5"
    assert ulaw_decode(b"\x00")[0] == -32124 and ulaw_decode(b"\x80")[0] == 32124
    assert alaw_decode(b"\xd5")[0] == 8 and alaw_decode(b"\x55")[0] == -8 and alaw_decode(b"\xaa")[0] == 32256
    ramp = np.linspace(-32768, 32767, 4001).astype(np.int16)
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        error = np.abs(decode(encode(ramp)).astype(int) - ramp.astype(int))
        assert np.all(error <= np.maximum(16, np.abs(ramp.astype(int)) // 16))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_engine_speaks_and_estimates_word_times() -> None:
    pcm, words = synthesize("Testing the speech engine", sample_rate=16000, voice="avery", engine="espeak")
    assert len(pcm) > 16000 * 0.5 and np.abs(pcm).max() > 1000
    assert [w for w, _, _ in words] == ["Testing", "the", "speech", "engine"]
    assert all(a[2] <= b[1] + 1e-9 for a, b in zip(words, words[1:]))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_emulator_serves_espeak_audio() -> None:
    with Emulator(fast_config(engine="espeak")) as emulator, open_ws(emulator) as ws:
        ws.send(request("Spoken by espeak", voice_id="liam", word_timestamps=True, sample_rate=16000))
        frames = collect(ws)
        served = emulator.served[0]
    assert [f["data"]["word"] for f in frames if f["status"] == "word_timestamp"] == ["Spoken", "by", "espeak"]
    assert np.array_equal(pcm_of(frames), served.pcm) and np.abs(served.pcm).max() > 1000


def test_espeak_failure_falls_back_to_tone(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", "")
    pcm, _ = synthesize("fallback", engine="espeak")
    assert np.array_equal(pcm, synthesize("fallback")[0])
    assert "falling back to the tone engine" in caplog.text
    assert np.array_equal(synthesize("auto", engine="auto")[0], synthesize("auto")[0])


# -- handshake and HTTP --------------------------------------------------------------


def test_bad_or_missing_key_gets_401_json(emu: Emulator) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": "Bearer "}):
        with pytest.raises(InvalidStatus) as caught:
            open_ws(emu, headers=headers)
        response = caught.value.response
        assert response.status_code == 401
        assert response.headers["Content-Type"] == "application/json"
        assert json.loads(response.body) == {"error": "Unauthorized", "message": "Bearer token is missing or invalid."}
    assert [h.status for h in emu.handshakes] == [401] * 4
    assert emu.connections_opened == 0
    assert KEY not in repr(emu) and "wrong" not in repr(emu.handshakes)


def test_good_key_accepted_and_headers_recorded(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with open_ws(emu, "?timeout=30", {**AUTH, "X-Source": "smallest_sync", "X-Smallest-Sync-Version": "0.1"}):
        assert emu.wait_for(lambda e: e.connections_active == 1, 5)
        shake = emu.handshakes[-1]
        assert shake.accepted and shake.status == 101 and shake.path == "/waves/v1/tts/live"
        assert shake.query == {"timeout": "30"}
        assert shake.headers["x-source"] == "smallest_sync"
        assert shake.headers["authorization"] == f"Bearer {KEY}"
        assert KEY not in repr(shake)
    assert emu.wait_for(lambda e: e.connections_active == 0, 5)
    assert emu.connections_opened == 1
    server_log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("smallest_sync.emulator"))
    assert "Authorization" in server_log and KEY not in server_log  # websockets logs headers at DEBUG


def test_any_key_accepted_without_api_key() -> None:
    with Emulator(fast_config()) as emulator, open_ws(emulator, headers={"Authorization": "Bearer whatever"}) as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert recv(ws) == {"type": "pong"}


def test_refuse_auth_and_reject_handshakes(emu: Emulator) -> None:
    emu.config.refuse_auth = True
    with pytest.raises(InvalidStatus) as caught:
        open_ws(emu)
    assert caught.value.response.status_code == 401
    emu.config.refuse_auth = False
    emu.config.reject_handshakes = 2
    for _ in range(2):
        with pytest.raises(InvalidStatus) as caught:
            open_ws(emu)
        assert caught.value.response.status_code == 503
    with open_ws(emu) as ws:
        ws.send(json.dumps({"type": "keepalive"}))
        assert recv(ws) == {"type": "pong"}
    assert emu.config.reject_handshakes == 0
    assert [(h.status, h.accepted) for h in emu.handshakes] == [(401, False), (503, False), (503, False), (101, True)]


def test_voices_endpoint_and_404(emu: Emulator) -> None:
    status, ctype, body = http_get(emu.http_url + "/waves/v1/lightning-v3.1/get_voices", AUTH)
    assert status == 200 and ctype == "application/json"
    voices = {v["voiceId"]: v for v in json.loads(body)["voices"]}
    assert {"meher", "devansh", "kartik", "maithili", "liam", "avery", "sophia", "emily", "arjun"} <= set(voices)
    assert voices["avery"]["tags"]["gender"] == "female" and "english" in voices["avery"]["tags"]["language"]
    assert http_get(emu.http_url + "/waves/v1/lightning-v3.1/get_voices")[0] == 401
    status, ctype, body = http_get(emu.http_url + "/elsewhere", AUTH)
    assert status == 404 and ctype == "application/json"
    with pytest.raises(InvalidStatus) as caught:
        connect(emu.base_url + "/waves/v1/tts/other", additional_headers=AUTH, **NO_PROXY)
    assert caught.value.response.status_code == 404


# -- synthesis -------------------------------------------------------------------------


def test_request_streams_words_and_exact_audio_then_complete_after_backoff(emu: Emulator) -> None:
    text = "The quick brown fox jumps over the lazy dog, twice."
    expected, words = synthesize(text, sample_rate=24000)
    backoff = 4 * UNIT
    with open_ws(emu) as ws:
        ws.send(request(text, word_timestamps=True, complete_backoff_ms=backoff * 1000))
        frames = collect(ws, until=("chunk",))
        while frames[-1]["status"] != "complete":
            last_chunk_at = time.monotonic()
            frames.append(recv(ws))
        complete_at = time.monotonic()
    statuses = {f["status"] for f in frames}
    assert statuses == {"word_timestamp", "chunk", "complete"}
    rids = {f["request_id"] for f in frames}
    sessions = {f["session_id"] for f in frames}
    assert len(rids) == 1 and len(sessions) == 1 and "external_request_id" not in frames[0]
    assert np.array_equal(pcm_of(frames), expected)
    # each word frame comes just before the chunk holding its start sample
    samples_before = 0
    for i, frame in enumerate(frames):
        if frame["status"] == "chunk":
            samples_before += len(base64.b64decode(frame["data"]["audio"])) // 2
        elif frame["status"] == "word_timestamp":
            data = frame["data"]
            assert (data["word"], data["start"], data["end"]) == words[data["id"]]
            start_sample = round(data["start"] * 24000)
            following = next(f for f in frames[i:] if f["status"] == "chunk")
            assert samples_before <= start_sample + 1
            assert start_sample - 1 < samples_before + len(base64.b64decode(following["data"]["audio"])) // 2
    assert [f["data"]["id"] for f in frames if f["status"] == "word_timestamp"] == list(range(len(words)))
    chunks = [f for f in frames if f["status"] == "chunk"]
    assert len(base64.b64decode(chunks[0]["data"]["audio"])) == round(0.150 * 24000) * 2
    served = emu.served[-1]
    assert served.text == text and served.completed and served.sent_samples == len(expected)
    assert served.request_id in rids and served.words == words
    assert np.array_equal(served.pcm, expected)
    assert complete_at - last_chunk_at >= backoff * 0.9


def test_word_timestamps_only_for_listed_voices(emu: Emulator) -> None:
    assert "sophia" not in WORD_TIMESTAMP_VOICES and "liam" in WORD_TIMESTAMP_VOICES
    with open_ws(emu) as ws:
        ws.send(request("no words here", voice_id="sophia", word_timestamps=True))
        assert {f["status"] for f in collect(ws)} == {"chunk", "complete"}
        ws.send(request("nor here", voice_id="liam"))
        assert {f["status"] for f in collect(ws)} == {"chunk", "complete"}
        emu.config.word_timestamps_any_voice = True
        ws.send(request("now words", voice_id="sophia", word_timestamps=True))
        assert "word_timestamp" in {f["status"] for f in collect(ws)}


def test_external_ids_echo_on_and_off(emu: Emulator) -> None:
    with open_ws(emu) as ws:
        ws.send(request("echo me", request_id="client-req.1", session_id="client_sess", word_timestamps=True))
        frames = collect(ws)
        assert all(f["external_request_id"] == "client-req.1" for f in frames)
        assert all(f["external_session_id"] == "client_sess" for f in frames)
        assert all(f["request_id"].startswith("req_") and f["session_id"] for f in frames)
        emu.config.echo_external_ids = False
        ws.send(request("old server", request_id="client-req.2"))
        frames = collect(ws)
        assert not any("external_request_id" in f for f in frames)
    served = emu.served
    assert served[0].external_request_id == "client-req.1" and served[0].external_session_id == "client_sess"
    assert served[0].request_id != served[1].request_id and served[0].session_id == served[1].session_id


def test_output_formats_ulaw_alaw_wav(emu: Emulator) -> None:
    text = "format check"
    expected, _ = synthesize(text, sample_rate=8000)
    with open_ws(emu) as ws:
        for fmt, decode in (("ulaw", ulaw_decode), ("alaw", alaw_decode)):
            ws.send(request(text, sample_rate=8000, output_format=fmt))
            decoded = decode(audio_bytes(collect(ws))).astype(int)
            assert len(decoded) == len(expected)
            assert np.max(np.abs(decoded - expected)) <= np.abs(expected).max() // 16 + 16
        ws.send(request(text, sample_rate=8000, output_format="wav"))
        frames = collect(ws)
        first = base64.b64decode(frames[0]["data"]["audio"])
        assert first[:4] == b"RIFF" and first[8:16] == b"WAVEfmt " and first[36:40] == b"data"
        assert int.from_bytes(first[24:28], "little") == 8000 and first[40:44] == b"\xff\xff\xff\xff"
        assert np.array_equal(np.frombuffer(audio_bytes(frames)[44:], "<i2"), expected)


def test_odd_chunks_split_samples(emu: Emulator) -> None:
    emu.config.odd_chunks = True
    text = "odd chunk boundaries"
    with open_ws(emu) as ws:
        ws.send(request(text))
        frames = collect(ws)
    sizes = [len(base64.b64decode(f["data"]["audio"])) for f in frames if f["status"] == "chunk"]
    assert len(sizes) > 2 and all(s % 2 == 1 for s in (sizes[0], sizes[-1]))
    assert all(offset % 2 == 1 for offset in np.cumsum(sizes)[:-1])
    assert np.array_equal(pcm_of(frames), synthesize(text)[0])


def test_pacing_follows_realtime_factor() -> None:
    config = fast_config(realtime_factor=8.0, chunk_ms=100)
    text = "paced audio arrives over time"
    duration = len(synthesize(text)[0]) / 24000
    with Emulator(config) as emulator, open_ws(emulator) as ws:
        started = time.monotonic()
        ws.send(request(text))
        ws.send(json.dumps({"type": "ping"}))
        frames = collect(ws)
        elapsed = time.monotonic() - started
    # the receiver answers while audio is still streaming
    assert frames.index({"type": "pong"}) < len(frames) - 3
    assert elapsed >= (duration - 0.1) / 8.0 * 0.9


def test_requests_are_served_one_at_a_time_in_order(emu: Emulator) -> None:
    backoff = 10 * UNIT
    with open_ws(emu) as ws:
        ws.send(request("first one", complete_backoff_ms=backoff * 1000))
        ws.send(request("second one", complete_backoff_ms=backoff * 1000))
        timed: List[Tuple[float, Frame]] = []
        while sum(f["status"] == "complete" for _, f in timed) < 2:
            frame = recv(ws)
            timed.append((time.monotonic(), frame))
    frames = [f for _, f in timed]
    order = [(f["status"], f["request_id"]) for f in frames]
    first_complete = order.index(("complete", order[0][1]))
    assert all(rid == order[0][1] for _, rid in order[:first_complete])
    assert all(rid != order[0][1] for _, rid in order[first_complete + 1:])
    assert [s.text for s in emu.served] == ["first one", "second one"]
    # a queued request cuts the backoff short; the last one waits it out
    assert timed[first_complete + 1][0] - timed[first_complete - 1][0] < backoff / 2
    assert timed[-1][0] - timed[-2][0] >= backoff * 0.9


# -- validation, keepalive, idle ------------------------------------------------------------


BAD_REQUESTS: List[Tuple[Dict[str, Any], str]] = [
    ({"voice_id": "meher"}, "text"),
    ({"text": 42, "voice_id": "meher"}, "text"),
    ({"text": "hi"}, "voice_id"),
    ({"text": "hi", "voice_id": "nobody"}, "voice_id"),
    ({"text": "hi", "voice_id": "meher", "model": "lightning_v2"}, "model"),
    ({"text": "hi", "voice_id": "meher", "language": "xx"}, "xx"),
    ({"text": "hi", "voice_id": "meher", "model": "lightning_v3.1", "language": "vi"}, "vi"),
    ({"text": "hi", "voice_id": "meher", "sample_rate": 22050}, "sample_rate"),
    ({"text": "hi", "voice_id": "meher", "speed": 3}, "speed"),
    ({"text": "hi", "voice_id": "meher", "speed": "fast"}, "speed"),
    ({"text": "hi", "voice_id": "meher", "output_format": "flac"}, "output_format"),
    ({"text": "hi", "voice_id": "meher", "output_format": "mp3"}, "mp3 is not supported by the emulator"),
    ({"text": "hi", "voice_id": "meher", "complete_backoff_ms": 20000}, "complete_backoff_ms"),
    ({"text": "hi", "voice_id": "meher", "max_buffer_delay_ms": -1}, "max_buffer_delay_ms"),
    ({"text": "hi", "voice_id": "meher", "context_id": "bad id!"}, "context_id"),
    ({"text": "hi", "voice_id": "meher", "request_id": "x" * 129}, "request_id"),
    ({"text": "hi", "voice_id": "meher", "session_id": ""}, "session_id"),
    ({"text": "this text is too long", "voice_id": "meher"}, "too long"),
]


@pytest.mark.parametrize("shape", ["message", "object"])
def test_validation_errors_in_both_shapes(emu: Emulator, shape: str) -> None:
    emu.config.error_shape = shape  # type: ignore[assignment]
    emu.config.max_text_chars = 10
    with open_ws(emu) as ws:
        for message, needle in BAD_REQUESTS:
            ws.send(json.dumps(message))
            frame = recv(ws)
            assert frame["status"] == "error", message
            assert needle in error_text(frame), (message, frame)
            if shape == "object":
                assert frame["error"]["code"] and "message" not in frame
            else:
                assert "error" not in frame
        ws.send("not json at all")
        assert "JSON" in error_text(recv(ws))
        ws.send("[1, 2]")
        assert recv(ws)["status"] == "error"
        ws.send(request("ok", model="lightning_v3.1_pro", language="vi"))  # pro allows vi
        assert collect(ws)[-1]["status"] == "complete"
    assert len(emu.served) == 1
    assert sum(r.message is None for r in emu.received) == 2


def test_ping_pong_and_whitespace_keepalive_make_no_audio(emu: Emulator) -> None:
    with open_ws(emu) as ws:
        for kind in ("ping", "keepalive", "keep_alive", "keep-alive"):
            ws.send(json.dumps({"type": kind}))
            assert recv(ws) == {"type": "pong"}
        ws.send(json.dumps({"text": " ", "voice_id": "meher", "model": "lightning_v3.1_pro", "language": "en"}))
        ws.send(request("\n\t"))
        expect_silence(ws, 2 * UNIT)
        emu.config.keepalive_reply = "complete"
        ws.send(request("  "))
        frame = recv(ws)
        assert frame["status"] == "complete" and frame["request_id"].startswith("req_")
    assert emu.served == [] and len(emu.received) == 7


def test_idle_timeout_closes_with_error_and_messages_reset_it(emu: Emulator) -> None:
    timeout = 6 * UNIT
    with open_ws(emu, f"?timeout={timeout:g}") as ws:
        started = time.monotonic()
        for _ in range(3):  # keep it alive for well over one timeout
            time.sleep(timeout / 2)
            ws.send(json.dumps({"type": "ping"}))
            assert recv(ws) == {"type": "pong"}
        frame = recv(ws, timeout=timeout * 4)
        assert time.monotonic() - started >= timeout * 1.5
        assert frame["status"] == "error"
        assert frame["message"] == f"Connection timed out after {timeout:g} seconds of inactivity"
        with pytest.raises(ConnectionClosedOK) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    emu.config.idle_timeout = timeout
    with open_ws(emu) as ws:
        assert "timed out" in error_text(recv(ws, timeout=timeout * 4))


# -- the disputed behaviours ---------------------------------------------------------------


def test_per_burst_sends_one_complete_after_the_queue_drains(emu: Emulator) -> None:
    emu.config.complete_mode = "per_burst"
    backoff_ms = 3 * UNIT * 1000
    with open_ws(emu) as ws:
        for text in ("one", "two two", "three three three"):
            ws.send(request(text, complete_backoff_ms=backoff_ms))
        frames = collect(ws, until=("complete",))
        expect_silence(ws, backoff_ms / 1000 * 2)
    chunk_ids = [f["request_id"] for f in frames if f["status"] == "chunk"]
    assert len(dict.fromkeys(chunk_ids)) == 3
    assert [f["status"] for f in frames].count("complete") == 1
    assert frames[-1]["request_id"] == chunk_ids[-1]
    assert [s.completed for s in emu.served] == [False, False, True]


def test_close_after_complete_and_legacy_complete(emu: Emulator) -> None:
    emu.config.close_after_complete = True
    emu.config.legacy_complete = True
    with open_ws(emu) as ws:
        ws.send(request("then goodbye"))
        complete = collect(ws)[-1]
        assert complete["status"] == "complete"
        assert complete["message"] == "All chunks sent" and complete["done"] is True
        with pytest.raises(ConnectionClosedOK) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    assert emu.wait_for(lambda e: e.connections_active == 0, 5)


def test_buffered_mode_joins_context_fragments(emu: Emulator) -> None:
    emu.config.continue_mode = "buffered"
    fragments = ["Hello there.", "How are", " you?"]
    joined = join_fragments(fragments)
    assert joined == "Hello there. How are you?"
    with open_ws(emu) as ws:
        for fragment in fragments:
            ws.send(request(fragment, context_id="turn-1", **{"continue": True}))
        expect_silence(ws, 2 * UNIT)  # held, nothing spoken yet
        ws.send(request("", context_id="turn-1", **{"continue": False}))
        frames = collect(ws)
        assert frames[-1]["status"] == "complete" and frames[-1]["context_id"] == "turn-1"
        assert np.array_equal(pcm_of(frames), synthesize(joined)[0])
        # legacy continue/flush without a context
        ws.send(request("Legacy", **{"continue": True}))
        ws.send(request(" flush", **{"continue": True}))
        ws.send(json.dumps({"text": "", "flush": True}))
        assert np.array_equal(pcm_of(collect(ws)), synthesize("Legacy flush")[0])
        # LiveKit: tokens with continue, the last one with flush; docs: context_close
        ws.send(request("Token", **{"continue": True}))
        ws.send(request("s end", flush=True, **{"continue": True}))
        ws.send(request("Docs", context_id="turn-3"))
        ws.send(request(" style.", context_id="turn-3", context_close=True))
        assert pcm_of(collect(ws)).size and pcm_of(collect(ws)).size
        # max_buffer_delay_ms releases a context nobody ends
        ws.send(request("late", context_id="turn-2", max_buffer_delay_ms=2 * UNIT * 1000))
        assert collect(ws)[-1]["status"] == "complete"
    assert [s.text for s in emu.served] == [joined, "Legacy flush", "Tokens end", "Docs style.", "late"]


def test_immediate_mode_speaks_each_fragment(emu: Emulator) -> None:
    with open_ws(emu) as ws:
        ws.send(request("first part", context_id="t", **{"continue": True}))
        ws.send(request("second part", context_id="t", **{"continue": True}))
        ws.send(request("", context_id="t", **{"continue": False}))  # ends the context; not an error
        frames = collect(ws) + collect(ws)
        expect_silence(ws, 2 * UNIT)
    assert [f["status"] for f in frames].count("complete") == 2
    assert [s.text for s in emu.served] == ["first part", "second part"]


def test_cancel_request_stops_a_context() -> None:
    text = " ".join(["cancel"] * 30)
    with Emulator(fast_config(realtime_factor=1.0)) as emulator, open_ws(emulator) as ws:
        ws.send(request(text, context_id="turn-9"))
        ws.send(request("queued behind", context_id="turn-9"))
        first = recv(ws)
        assert first["status"] == "chunk"
        ws.send(json.dumps({"context_id": "turn-9", "cancel_request": True}))
        frames = collect(ws)
        assert frames[-1]["status"] == "complete" and frames[-1]["request_id"] == first["request_id"]
        expect_silence(ws, 2 * UNIT)
        served = emulator.served
        assert len(served) == 1 and served[0].cancelled and served[0].completed
        assert 0 < served[0].sent_samples < len(served[0].pcm) / 2


@pytest.mark.parametrize("shape", ["message", "object"])
def test_error_fault_frame_shapes(emu: Emulator, shape: str) -> None:
    emu.config.error_shape = shape  # type: ignore[assignment]
    emu.config.fault, emu.config.fault_after_chunks = "error", 1
    with open_ws(emu) as ws:
        ws.send(request("this request fails part way"))
        frames = collect(ws)
        assert [f["status"] for f in frames] == ["chunk", "error"]
        assert frames[1]["request_id"] == frames[0]["request_id"] and error_text(frames[1])
        if shape == "object":
            assert frames[1]["error"]["code"] == "internal"
        expect_silence(ws, 2 * UNIT)  # no complete for it
        emu.config.fault = None
        ws.send(request("the next one works"))
        assert collect(ws)[-1]["status"] == "complete"
    assert emu.served[0].fault == "error" and not emu.served[0].completed


@pytest.mark.parametrize("after", [0, 2])
def test_drop_fault_aborts_without_close_frame(emu: Emulator, after: int) -> None:
    emu.config.fault, emu.config.fault_after_chunks = "drop", after
    with open_ws(emu) as ws:
        ws.send(request("dropped mid stream please"))
        got = 0
        with pytest.raises(ConnectionClosedError) as closed:
            while True:
                recv(ws)
                got += 1
        assert closed.value.rcvd is None and got == after
    assert emu.served[0].fault == "drop"
    assert emu.served[0].sent_samples == after * round(0.15 * 24000)


def test_stall_fault_keeps_socket_open_and_silent(emu: Emulator) -> None:
    emu.config.fault, emu.config.fault_after_chunks = "stall", 1
    with open_ws(emu, "?timeout=0.1") as ws:
        ws.send(request("this one stalls forever"))
        assert recv(ws)["status"] == "chunk"
        expect_silence(ws, 4 * UNIT)  # longer than the idle timeout: paused while stalled
        ws.send(json.dumps({"type": "ping"}))
        assert recv(ws) == {"type": "pong"}
    served = emu.served[0]
    assert served.fault == "stall" and not served.completed


@pytest.mark.parametrize("fault", ["malformed", "unknown_status"])
def test_odd_frame_faults_then_carry_on(emu: Emulator, fault: str) -> None:
    emu.config.fault, emu.config.fault_after_chunks = fault, 1  # type: ignore[assignment]
    with open_ws(emu) as ws:
        ws.send(request("strange frames appear"))
        assert recv(ws)["status"] == "chunk"
        odd = ws.recv(timeout=5)
        if fault == "malformed":
            with pytest.raises(ValueError):
                json.loads(odd)
        else:
            assert json.loads(odd)["status"] == "mystery"
        rest = collect(ws)
    assert rest[-1]["status"] == "complete"
    assert len(audio_bytes(rest)) // 2 + round(0.15 * 24000) == len(synthesize("strange frames appear")[0])


def test_close_fault_closes_with_1011(emu: Emulator) -> None:
    emu.config.fault, emu.config.fault_after_chunks = "close", 1
    with open_ws(emu) as ws:
        ws.send(request("closing soon"))
        assert recv(ws)["status"] == "chunk"
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


# -- control from the test thread ------------------------------------------------------------


def test_drop_all_wait_for_and_clear(emu: Emulator) -> None:
    with open_ws(emu) as first, open_ws(emu) as second:
        assert emu.wait_for(lambda e: e.connections_active == 2, 5)
        emu.drop_all()
        for ws in (first, second):
            with pytest.raises(ConnectionClosedError) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is None
        assert emu.wait_for(lambda e: e.connections_active == 0, 5)
    assert emu.connections_opened == 2 and len(emu.handshakes) == 2
    assert emu.wait_for(lambda e: False, UNIT) is False
    emu.clear()
    assert emu.handshakes == [] and emu.received == [] and emu.served == []
    emu.stop()
    emu.stop()  # idempotent


def test_cli_prints_its_line_and_stops_on_sigterm() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "smallest_sync.emulator", "--port", "0", "--engine", "tone",
               "--realtime-factor", "0", "--complete-backoff-ms", "0", "--api-key", KEY]
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("Smallest emulator listening on ws://127.0.0.1:")
            base_url = line.rsplit(" ", 1)[1].strip()
            with connect(base_url + "/waves/v1/tts/live", additional_headers=AUTH, **NO_PROXY) as ws:
                ws.send(request("from the command line"))
                assert collect(ws)[-1]["status"] == "complete"
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert out == "" and KEY not in err
