"""Client message validation and server frame construction (pure, no I/O)."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Union

from .catalog import (
    DEFAULT_MODEL,
    DEFAULT_SAMPLE_RATE,
    MODELS,
    OUTPUT_FORMATS,
    SAMPLE_RATES,
    VOICES,
    languages_for,
)

__all__ = [
    "ClientIds",
    "FrameBuilder",
    "PING_TYPES",
    "RequestError",
    "SynthesisParams",
    "flag",
    "join_fragments",
    "new_request_id",
    "new_session_id",
    "parse_client_message",
    "parse_ids",
    "parse_params",
]

Frame = Dict[str, Any]

PING_TYPES = frozenset({"ping", "keepalive", "keep_alive", "keep-alive"})
_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}\Z")
_SENTENCE_END = ".!?,;:"


class RequestError(Exception):
    """A client message the service refuses; becomes an ``error`` frame."""

    def __init__(self, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class ClientIds:
    """Validated client-chosen identifiers of a message."""

    context_id: Optional[str] = None
    request_id: Optional[str] = None
    session_id: Optional[str] = None


@dataclass(frozen=True)
class SynthesisParams:
    """Validated synthesis fields of a request, defaults applied."""

    voice_id: str
    model: str
    language: str
    sample_rate: int
    speed: float
    output_format: str
    word_timestamps: bool
    complete_backoff_ms: Optional[float]
    max_buffer_delay_ms: Optional[float]


def new_request_id() -> str:
    return f"req_{secrets.token_hex(8)}"


def new_session_id() -> str:
    return f"sess_{secrets.token_hex(8)}"


def flag(message: Mapping[str, Any], key: str) -> bool:
    """True only for a JSON ``true`` (not for other truthy values)."""
    return message.get(key) is True


def parse_client_message(raw: Union[str, bytes]) -> Optional[Dict[str, Any]]:
    """The message as a dict, or ``None`` when it is not a JSON object."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def parse_ids(message: Mapping[str, Any]) -> ClientIds:
    """Validate ``context_id``, ``request_id`` and ``session_id`` when present."""
    values: Dict[str, Optional[str]] = {}
    for key in ("context_id", "request_id", "session_id"):
        value = message.get(key)
        if value is not None and not (isinstance(value, str) and _ID_RE.match(value)):
            raise RequestError(f"Invalid {key}: must be 1-128 characters of [A-Za-z0-9_.-]")
        values[key] = value
    return ClientIds(**values)


def _number(message: Mapping[str, Any], key: str, default: Optional[float],
            low: float, high: float) -> Optional[float]:
    value = message.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(f"Invalid {key}: must be a number between {low:g} and {high:g}")
    return float(value)


def parse_params(message: Mapping[str, Any], *, max_text_chars: Optional[int] = None) -> SynthesisParams:
    """Validate the synthesis fields of a message whose ``text`` is a string.

    Raises:
        RequestError: on the first invalid field, with a message like the service's.
    """
    text = message["text"]
    if max_text_chars is not None and len(text) > max_text_chars:
        raise RequestError(f"text is too long: {len(text)} characters (maximum {max_text_chars})")
    voice = message.get("voice_id")
    if not isinstance(voice, str) or not voice:
        raise RequestError("Missing required field: voice_id")
    if voice not in VOICES:
        raise RequestError(f"Unknown voice_id: {voice}")
    model = message.get("model", DEFAULT_MODEL)
    if model not in MODELS:
        raise RequestError(f"Invalid model: {model!s}; expected one of {', '.join(MODELS)}")
    language = message.get("language", "en")
    if language not in languages_for(model):
        raise RequestError(f"Language {language!s} is not supported by model {model}")
    rate = message.get("sample_rate", DEFAULT_SAMPLE_RATE)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate not in SAMPLE_RATES:
        raise RequestError(f"Invalid sample_rate: {rate!s}; expected one of "
                           f"{', '.join(str(r) for r in SAMPLE_RATES)}")
    speed = _number(message, "speed", 1.0, 0.5, 2.0)
    output_format = message.get("output_format", "pcm")
    if output_format == "mp3":
        raise RequestError("mp3 is not supported by the emulator", "unsupported_format")
    if output_format not in OUTPUT_FORMATS:
        raise RequestError(f"Invalid output_format: {output_format!s}; expected one of "
                           "pcm, mp3, wav, ulaw, alaw")
    return SynthesisParams(
        voice_id=voice,
        model=model,
        language=language,
        sample_rate=int(rate),
        speed=speed if speed is not None else 1.0,
        output_format=output_format,
        word_timestamps=flag(message, "word_timestamps"),
        complete_backoff_ms=_number(message, "complete_backoff_ms", None, 0, 10000),
        max_buffer_delay_ms=_number(message, _buffer_delay_key(message), None, 0, 5000),
    )


def _buffer_delay_key(message: Mapping[str, Any]) -> str:
    """``max_buffer_delay_ms`` (PROTOCOL.md), or LiveKit's spelling ``max_buffer_flush_ms``."""
    if "max_buffer_delay_ms" not in message and "max_buffer_flush_ms" in message:
        return "max_buffer_flush_ms"
    return "max_buffer_delay_ms"


def join_fragments(fragments: List[str]) -> str:
    """Join buffered fragments of one context into the text that is spoken.

    Fragments are concatenated verbatim (LLM tokens carry their own spaces),
    except that one space is inserted where a fragment ends in sentence or
    clause punctuation and the next starts without whitespace (sentence
    aggregators usually strip their output): ``["Hi.", "Bye"]`` -> ``"Hi. Bye"``,
    ``["Hel", "lo"]`` -> ``"Hello"``.
    """
    text = ""
    for fragment in fragments:
        if text and fragment and text[-1] in _SENTENCE_END and not fragment[0].isspace():
            text += " "
        text += fragment
    return text


class FrameBuilder:
    """Builds the server frames of one connection (ids, echoes, error shape)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id

    def frame(self, status: str, *, request_id: Optional[str] = None,
              ids: Optional[ClientIds] = None, echo: bool = True, **body: Any) -> Frame:
        """``{"status", "request_id", "session_id", external ids, context_id, **body}``."""
        frame: Frame = {"status": status}
        if request_id is not None:
            frame["request_id"] = request_id
        frame["session_id"] = self.session_id
        if ids is not None:
            if echo and ids.request_id is not None:
                frame["external_request_id"] = ids.request_id
            if echo and ids.session_id is not None:
                frame["external_session_id"] = ids.session_id
            if ids.context_id is not None:
                frame["context_id"] = ids.context_id
        frame.update(body)
        return frame

    def error(self, message: str, code: str, *, shape: str, request_id: Optional[str] = None,
              ids: Optional[ClientIds] = None, echo: bool = True) -> Frame:
        if shape == "object":
            return self.frame("error", request_id=request_id, ids=ids, echo=echo,
                              error={"message": message, "code": code})
        return self.frame("error", request_id=request_id, ids=ids, echo=echo, message=message)

    def complete(self, *, request_id: str, ids: Optional[ClientIds], echo: bool, legacy: bool) -> Frame:
        if legacy:
            return self.frame("complete", request_id=request_id, ids=ids, echo=echo,
                              message="All chunks sent", done=True)
        return self.frame("complete", request_id=request_id, ids=ids, echo=echo)
