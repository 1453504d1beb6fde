"""The wire format: what we send, how frames parse, how audio decodes."""
from __future__ import annotations

import base64
import io
import json
import struct
import wave

import numpy as np
import pytest

from smallest_sync.errors import ProtocolError
from smallest_sync.net.protocol import (
    AudioChunk,
    Complete,
    PcmDecoder,
    Pong,
    ServerError,
    UnknownFrame,
    WordTimestamp,
    build_keepalive,
    build_request,
    parse_frame,
)
from smallest_sync.settings import Settings


def test_request_has_the_seed_fields_in_order_and_our_ids() -> None:
    message = json.loads(build_request("Hi.", Settings(speed=1.25), request_id="r1", complete_backoff_ms=0))
    assert list(message) == ["text", "voice_id", "model", "language", "sample_rate", "speed",
                             "word_timestamps", "output_format", "complete_backoff_ms", "request_id"]
    assert message == {
        "text": "Hi.", "voice_id": "meher", "model": "lightning_v3.1_pro", "language": "en",
        "sample_rate": 24000, "speed": 1.25, "word_timestamps": True, "output_format": "pcm",
        "complete_backoff_ms": 0, "request_id": "r1",
    }


def test_request_leaves_out_unset_options() -> None:
    message = json.loads(build_request("x", Settings(word_timestamps=False)))
    assert "speed" not in message and "word_timestamps" not in message and "request_id" not in message


@pytest.mark.parametrize("text", ['say "hi"\nthen\tleave', "emoji 🎉 and RTL שלום", "\\ backslash \u2028"])
def test_any_text_crosses_as_ascii_json_and_round_trips(text: str) -> None:
    raw = build_request(text, Settings())
    assert raw.isascii()
    assert json.loads(raw)["text"] == text


def test_keepalives() -> None:
    assert json.loads(build_keepalive(Settings(), "ping")) == {"type": "ping"}
    text = json.loads(build_keepalive(Settings(voice="liam")))
    assert text == {"text": " ", "voice_id": "liam", "model": "lightning_v3.1_pro", "language": "en"}


def test_parse_each_frame_kind() -> None:
    audio = base64.b64encode(b"\x01\x00\x02\x00").decode()
    chunk = parse_frame(json.dumps({"status": "chunk", "request_id": "a", "external_request_id": "x",
                                    "session_id": "s", "data": {"audio": audio}, "future_key": 1}))
    assert chunk == AudioChunk("a", "x", audio=b"\x01\x00\x02\x00")
    word = parse_frame('{"status":"word_timestamp","request_id":"a","data":{"id":3,"word":"$100","start":1.12,"end":1.92}}')
    assert word == WordTimestamp("a", None, word_id=3, word="$100", start=1.12, end=1.92)
    assert parse_frame('{"status":"complete","request_id":"a","message":"All chunks sent","done":true}') == Complete("a", None)
    assert parse_frame('{"type":"pong"}') == Pong(None, None)
    assert parse_frame('{"status":"mystery","request_id":"a"}') == UnknownFrame("a", None, status="mystery")


def test_parse_both_error_shapes() -> None:
    assert parse_frame('{"status":"error","message":"Voice not found"}') == ServerError(None, None, message="Voice not found", code=None)
    nested = parse_frame('{"status":"error","request_id":"r","error":{"message":"Too many","code":429}}')
    assert nested == ServerError("r", None, message="Too many", code="429")


_B64 = base64.b64encode(bytes(range(256)) * 4).decode()  # every byte value; has "/" and "+"


@pytest.mark.parametrize("raw", [
    '{"status":"chunk","request_id":"a","data":{"audio":"%s"}}' % _B64,  # the service's compact form
    '{"data": {"audio": "%s"}, "status": "chunk", "request_id": "a"}' % _B64,  # spaces, other key order
    '{"status":"chunk","request_id":"a","data":{"audio":"%s"}}' % _B64.replace("/", "\\/"),  # escaped slashes
    '{"status":"chunk","request_id":"a","data":{"audio":"%s"}}' % _B64.replace("A", "\\u0041"),  # escaped letters
    '{"status":"chunk","request_id":"a","audio":"QUJD","data":{"audio":"%s"}}' % _B64,  # a second audio key
    '{"status":"chunk","request_id":"a","data":{"audio":"QUJD","audio":"%s"}}' % _B64,  # duplicate: the last wins
    '{"status":"chunk","request_id":"a","note":"say \\"audio\\":\\"QUJD\\"","data":{"audio":"%s"}}' % _B64,
])
def test_chunk_audio_is_what_a_full_json_parse_gives(raw: str) -> None:
    # The parser lifts the base64 out of the text before parsing it (a quarter faster):
    # whatever the JSON's form, the audio must be exactly the JSON's data.audio.
    assert json.loads(raw)["data"]["audio"] == _B64  # (the frames are valid and mean the same)
    assert parse_frame(raw) == AudioChunk("a", None, audio=bytes(range(256)) * 4)
    # The reader hands frames over as bytes (websocket-client's recv_data): the same.
    assert parse_frame(raw.encode()) == AudioChunk("a", None, audio=bytes(range(256)) * 4)


@pytest.mark.parametrize("raw", [
    '{"status":"chunk","audio":"QUJD","data":{"audio":null}}',  # audio, but not where it belongs
    '{"status":"chunk","audio":"QUJD","data":{}}',
    '{"status":"chunk","data":{"audio":"QU\nJD"}}',  # a raw newline: not JSON
    '{"status":"chunk","data":{"audio":"QUJD}}',  # unterminated
    '{"status":"chunk","data":{"audio":"\\u0000"}}',  # the parser's own stand-in, sent by a server
    '{"status":"chunk","audio":"QUJD","data":{"audio":"\\u0000"}}',  # ... next to audio in the wrong place
])
def test_chunk_frames_with_misplaced_or_broken_audio_raise_protocol_error(raw: str) -> None:
    with pytest.raises(ProtocolError):
        parse_frame(raw)
    with pytest.raises(ProtocolError):
        parse_frame(raw.encode())


@pytest.mark.parametrize("raw", ["not json", "[1,2]", '{"status":"chunk"}', '{"status":"chunk","data":{"audio":"%%%"}}',
                                 '{"status":"word_timestamp","data":{"word":"a","start":"soon"}}', b"\xff\xfe"])
def test_malformed_frames_raise_protocol_error(raw: object) -> None:
    with pytest.raises(ProtocolError):
        parse_frame(raw)  # type: ignore[arg-type]


def test_pcm_decoder_carries_an_odd_byte_over() -> None:
    samples = np.arange(-500, 500, 7, dtype=np.int16)
    data = samples.astype("<i2").tobytes()
    decoder = PcmDecoder("pcm")
    pieces = [decoder.decode(data[i:i + 5]) for i in range(0, len(data), 5)]
    assert np.array_equal(np.concatenate(pieces), samples)
    assert decoder.pending_bytes == 0


def test_wav_header_split_across_chunks_is_skipped() -> None:
    samples = (np.sin(np.arange(2000) / 5) * 9000).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(samples.tobytes())
    data = buffer.getvalue()
    decoder = PcmDecoder("wav")
    out = np.concatenate([decoder.decode(data[i:i + 7]) for i in range(0, len(data), 7)])
    assert np.array_equal(out, samples)


def test_wav_without_riff_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        PcmDecoder("wav").decode(b"NOTRIFF-at-all-here")


def test_g711_known_code_points() -> None:
    # ITU-T G.711: 0xFF/0x7F are u-law zero, 0x00/0x80 its extremes; A-law 0xD5/0x55 are +-8.
    ulaw = PcmDecoder("ulaw").decode(bytes([0xFF, 0x7F, 0x00, 0x80]))
    assert ulaw.tolist() == [0, 0, -32124, 32124]
    alaw = PcmDecoder("alaw").decode(bytes([0xD5, 0x55, 0xAA, 0x2A]))
    assert alaw.tolist() == [8, -8, 32256, -32256]


def test_g711_is_monotonic_in_magnitude() -> None:
    # Each half of the u-law table must run through magnitudes in order.
    table = PcmDecoder("ulaw").decode(bytes(range(256))).astype(int)
    assert np.all(np.diff(table[:128]) > 0) and np.all(np.diff(table[128:]) < 0)
    assert struct.calcsize("<h") == 2


@pytest.mark.parametrize("raw", ['{"status":"chunk","data":{"audio":"AAAA\\u00e9"}}', "[" * 100000 + "]" * 100000])
def test_hostile_frames_are_protocol_errors_not_crashes(raw: str) -> None:
    with pytest.raises(ProtocolError):
        parse_frame(raw)
