"""The Waves live TTS wire format: pure functions and small value types, no I/O.

Builds the JSON a client sends, parses what the server sends into typed events,
and turns audio payloads (pcm, wav, G.711 u-law/A-law) into int16 samples.
PROTOCOL.md (shared with the emulator) is the reference for every field here.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import struct
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from .._types import Pcm, Record
from ..errors import ProtocolError
from ..settings import Settings

logger = logging.getLogger(__name__)

__all__ = [
    "LIVE_PATH",
    "build_request",
    "build_keepalive",
    "parse_frame",
    "AudioChunk",
    "WordTimestamp",
    "Complete",
    "ServerError",
    "Pong",
    "UnknownFrame",
    "ServerEvent",
    "PcmDecoder",
]

LIVE_PATH = "/waves/v1/tts/live"


def _dumps(message: Dict[str, Any]) -> str:
    # ensure_ascii keeps the frame pure ASCII: any text (RTL, emoji, quotes, newlines)
    # crosses as JSON escapes and cannot be mangled by an intermediary.
    return json.dumps(message, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def build_request(
    text: str,
    settings: Settings,
    *,
    request_id: Optional[str] = None,
    complete_backoff_ms: Optional[int] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> str:
    """The JSON text of one synthesis request.

    Field order follows the seed integration so captures read alike; optional
    fields are sent only when set, so servers that predate them see the old shape.
    """
    message: Dict[str, Any] = {
        "text": text,
        "voice_id": settings.voice,
        "model": settings.model,
        "language": settings.language,
        "sample_rate": settings.sample_rate,
    }
    if settings.speed is not None:
        message["speed"] = settings.speed
    if settings.word_timestamps:
        message["word_timestamps"] = True
    message["output_format"] = settings.output_format
    if complete_backoff_ms is not None:
        message["complete_backoff_ms"] = complete_backoff_ms
    if request_id is not None:
        message["request_id"] = request_id
    if extra:
        message.update(extra)
    return _dumps(message)


def build_keepalive(settings: Settings, style: str = "text", *, request_id: Optional[str] = None) -> str:
    """A message that only resets the server's idle timer.

    ``"text"`` is the whitespace request production integrations send (known to be
    accepted by every server version); ``"ping"`` is the newer ``{"type":"ping"}``.
    A ``request_id`` lets an echoing server's reply be told apart from a request's.
    """
    if style == "ping":
        return _dumps({"type": "ping"})
    message: Dict[str, Any] = {
        "text": " ", "voice_id": settings.voice, "model": settings.model, "language": settings.language,
    }
    if request_id is not None:
        message["request_id"] = request_id
    return _dumps(message)


# Frames are immutable Records, cheap both to define (a NamedTuple compiles code at
# import time) and to build (one per audio chunk on the reader thread). Each starts
# with the two ids.


_set = object.__setattr__


class AudioChunk(Record):
    """Encoded audio bytes of one request (still in the request's output_format)."""

    __slots__ = ("request_id", "external_request_id", "audio")
    request_id: Optional[str]
    external_request_id: Optional[str]
    audio: bytes

    def __init__(self, request_id: Optional[str], external_request_id: Optional[str], audio: bytes) -> None:
        # Unrolled: this runs once per audio frame, and Record's generic loop is slower.
        _set(self, "request_id", request_id)
        _set(self, "external_request_id", external_request_id)
        _set(self, "audio", audio)


class WordTimestamp(Record):
    """One word, timed in seconds on its own request's audio."""

    __slots__ = ("request_id", "external_request_id", "word_id", "word", "start", "end")
    request_id: Optional[str]
    external_request_id: Optional[str]
    word_id: Optional[int]  # the server's "id" of the word, when sent
    word: str
    start: float
    end: float

    def __init__(self, request_id: Optional[str], external_request_id: Optional[str], word_id: Optional[int],
                 word: str, start: float, end: float) -> None:
        super().__init__(request_id, external_request_id, word_id, word, start, end)


class Complete(Record):
    """The server has sent all audio of a request (or of a burst of requests)."""

    __slots__ = ("request_id", "external_request_id")
    request_id: Optional[str]
    external_request_id: Optional[str]

    def __init__(self, request_id: Optional[str], external_request_id: Optional[str]) -> None:
        super().__init__(request_id, external_request_id)


class ServerError(Record):
    """An error frame, either documented shape."""

    __slots__ = ("request_id", "external_request_id", "message", "code")
    request_id: Optional[str]
    external_request_id: Optional[str]
    message: str
    code: Optional[str]

    def __init__(self, request_id: Optional[str], external_request_id: Optional[str], message: str,
                 code: Optional[str]) -> None:
        super().__init__(request_id, external_request_id, message, code)


class Pong(Record):
    """Answer to ``{"type":"ping"}``."""

    __slots__ = ("request_id", "external_request_id")
    request_id: Optional[str]
    external_request_id: Optional[str]

    def __init__(self, request_id: Optional[str], external_request_id: Optional[str]) -> None:
        super().__init__(request_id, external_request_id)


class UnknownFrame(Record):
    """A well-formed frame with a status this client does not know (kept, not fatal)."""

    __slots__ = ("request_id", "external_request_id", "status")
    request_id: Optional[str]
    external_request_id: Optional[str]
    status: Optional[str]

    def __init__(self, request_id: Optional[str], external_request_id: Optional[str], status: Optional[str]) -> None:
        super().__init__(request_id, external_request_id, status)


ServerEvent = Union[AudioChunk, WordTimestamp, Complete, ServerError, Pong, UnknownFrame]


def _opt_str(message: Dict[str, Any], key: str) -> Optional[str]:
    value = message.get(key)
    return value if isinstance(value, str) else None


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"word_timestamp {what} is not a number: {value!r}"[:200])
    return float(value)


# (the key that starts the audio, a quote, a backslash, the stand-in) per type of frame
# text: the reader hands over bytes (websocket-client's recv_data), callers may pass str.
_LIFT_TOKENS: Dict[type, Tuple[Any, Any, Any, Any]] = {
    bytes: (b'"audio":"', b'"', b"\\", b'"\\u0000"'),
    str: ('"audio":"', '"', "\\", '"\\u0000"'),  # the stand-in is JSON text of a string base64 cannot be
}


def _lift_audio(raw: Union[str, bytes]) -> Optional[Tuple[Union[str, bytes], Union[str, bytes]]]:
    """Split a chunk frame's base64 audio out of its JSON text: (the text with that
    string replaced by a stand-in that parses to ``"\\x00"``, the base64), or None
    if the frame is not in the plain form (no such key, two of them, an escape in
    the value).

    ``json.loads`` would scan and copy the ~10 kB base64 string only for it to be
    decoded: lifting it out first makes parsing a chunk about a quarter faster. The
    pattern cannot match inside a JSON string (its quotes would be escaped), and a
    value without backslashes ends at the next quote, so the result is what a full
    parse would give.
    """
    tokens = _LIFT_TOKENS.get(type(raw))
    if tokens is None:
        return None
    key, quote, backslash, stand_in = tokens
    start = raw.find(key)
    if start < 0:
        return None
    begin = start + len(key)
    end = raw.find(quote, begin)
    if end < 0 or raw.find(key, end) >= 0:
        return None
    audio = raw[begin:end]
    if backslash in audio:
        return None
    return raw[:begin - 1] + stand_in + raw[end + 1:], audio


def parse_frame(raw: Union[str, bytes]) -> ServerEvent:
    """Parse one server text frame. Raises ProtocolError for anything malformed.

    Unknown keys are ignored; an unknown ``status`` becomes :class:`UnknownFrame`.
    """
    lifted = _lift_audio(raw)
    try:
        message = json.loads(raw if lifted is None else lifted[0])
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"server frame is not JSON: {str(raw)[:80]!r}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"server frame is not a JSON object: {str(raw)[:80]!r}")
    ids = (_opt_str(message, "request_id"), _opt_str(message, "external_request_id"))
    status = message.get("status")
    if status == "chunk":
        data = message.get("data")
        audio = data.get("audio") if isinstance(data, dict) else None
        if lifted is not None and audio == "\x00":
            audio = lifted[1]
        if not isinstance(audio, (str, bytes)):
            raise ProtocolError("chunk frame without data.audio")
        try:
            return AudioChunk(ids[0], ids[1], base64.b64decode(audio, validate=True))
        except (binascii.Error, ValueError) as exc:  # non-ASCII text raises a plain ValueError
            raise ProtocolError("chunk audio is not valid base64") from exc
    if status == "word_timestamp":
        data = message.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("word"), str):
            raise ProtocolError("word_timestamp frame without data.word")
        index = data.get("id")
        return WordTimestamp(
            *ids,
            word_id=index if isinstance(index, int) and not isinstance(index, bool) else None,
            word=data["word"],
            start=_number(data.get("start"), "start"),
            end=_number(data.get("end", data.get("start")), "end"),
        )
    if status == "complete":
        return Complete(*ids)
    if status == "error":
        error = message.get("error")
        code: Optional[str] = None
        if isinstance(error, dict):
            text = error.get("message")
            code = None if error.get("code") is None else str(error.get("code"))
        else:
            text = message.get("message", error)
        return ServerError(*ids, message=str(text) if text is not None else "unknown server error", code=code)
    if status is None and message.get("type") == "pong":
        return Pong(*ids)
    return UnknownFrame(*ids, status=str(status) if status is not None else None)


def _ulaw_table() -> "np.ndarray[Any, np.dtype[np.int16]]":
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    magnitude = (((u & 0x0F) << 3) + 0x84) << exponent
    return np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


def _alaw_table() -> "np.ndarray[Any, np.dtype[np.int16]]":
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = (a & 0x0F) << 4
    magnitude = np.where(exponent == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


# G.711 decodes by table look-up; the stdlib's audioop is gone in Python 3.13. Made
# on first use: most programs never ask for ulaw or alaw.
_G711_TABLES = {"ulaw": _ulaw_table, "alaw": _alaw_table}
_G711: Dict[str, Pcm] = {}
# int16 as the service sends it (little-endian); on such machines a frombuffer view
# of the payload is already the samples, with no conversion call.
_WIRE_INT16 = np.dtype("<i2")
_NATIVE_IS_WIRE = _WIRE_INT16 == np.dtype(np.int16)
_EMPTY = np.zeros(0, dtype=np.int16)
_EMPTY.flags.writeable = False


class PcmDecoder:
    """Turns one request's audio payloads into int16 samples, chunk by chunk.

    Carries a trailing odd byte of 16-bit PCM over to the next chunk, and skips a
    WAV header even when it is split across chunks. Not thread-safe: one decoder
    per request, used from the reader thread only.
    """

    _WAV_HEADER_LIMIT = 1 << 16

    def __init__(self, output_format: str = "pcm") -> None:
        if output_format not in ("pcm", "wav", "ulaw", "alaw"):
            raise ValueError(f"cannot decode output_format {output_format!r}")
        self._format = output_format
        self._table: Optional[Pcm] = None  # G.711: the sample of each byte value
        if output_format in _G711_TABLES:
            if output_format not in _G711:
                _G711[output_format] = _G711_TABLES[output_format]()
            self._table = _G711[output_format]
        self._pending = b""
        self._in_header = output_format == "wav"

    def decode(self, payload: bytes) -> "np.ndarray[Any, np.dtype[np.int16]]":
        """Samples of this payload (may be empty while a header or half sample is pending).

        Read-only: the player, ``on_audio`` and the phrase cache share them.
        """
        table = self._table
        if table is not None:
            pcm = table[np.frombuffer(payload, dtype=np.uint8)]
            pcm.flags.writeable = False
            return pcm
        data = self._pending + payload if self._pending else payload
        if self._in_header:
            data = self._skip_wav_header(data)
            if self._in_header:
                self._pending = data
                return _EMPTY
        usable = len(data) & ~1
        self._pending = data[usable:]
        if not usable:
            return _EMPTY
        # A read-only view of the payload (it keeps the bytes alive); a copy only on
        # big-endian machines, where the samples must be swapped.
        samples = np.frombuffer(data, dtype=_WIRE_INT16, count=usable // 2)
        return samples if _NATIVE_IS_WIRE else samples.astype(np.int16)

    @property
    def pending_bytes(self) -> int:
        """Bytes held back (half a sample, or an incomplete WAV header)."""
        return len(self._pending)

    def _skip_wav_header(self, data: bytes) -> bytes:
        if len(data) < 12:
            return data
        if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
            raise ProtocolError("wav audio does not start with a RIFF/WAVE header")
        offset = 12
        while offset + 8 <= len(data):
            chunk_id, size = data[offset:offset + 4], struct.unpack("<I", data[offset + 4:offset + 8])[0]
            if chunk_id == b"data":
                self._in_header = False
                return data[offset + 8:]
            offset += 8 + size + (size & 1)
        if len(data) > self._WAV_HEADER_LIMIT:
            raise ProtocolError("wav header has no data chunk")
        return data
