"""Voice settings and their validation, done before anything is sent.

Values follow PROTOCOL.md. Voices cannot be checked offline (the catalogue is on
the server), so a voice id is only checked for shape; a voice the service does not
know fails with :class:`~smallest_sync.errors.APIError` on first use.
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Dict, Optional, Tuple

from ._types import Record
from .errors import ConfigurationError

__all__ = [
    "Settings",
    "MODELS",
    "LANGUAGES",
    "SAMPLE_RATES",
    "SERVICE_RATES",
    "OUTPUT_FORMATS",
    "DEFAULT_VOICES",
    "validate_text",
    "resolve_api_key",
    "DEFAULT_BASE_URL",
    "API_KEY_ENV",
]

DEFAULT_BASE_URL = "wss://api.smallest.ai"
API_KEY_ENV = "SMALLEST_API_KEY"

MODELS: Tuple[str, ...] = ("lightning_v3.1", "lightning_v3.1_pro")
DEFAULT_VOICES: Dict[str, str] = {"lightning_v3.1_pro": "meher", "lightning_v3.1": "sophia"}
LANGUAGES: Tuple[str, ...] = tuple(
    "auto en hi mr kn ta bn gu te ml pa or es de fr it nl sv pt ru el fi no pl ar zh id ja ko ms tr vi".split()
)
SAMPLE_RATES: Tuple[int, ...] = (8000, 16000, 24000, 44100)
#: The same, in the order a Speaker prefers them when the output device chooses.
SERVICE_RATES: Tuple[int, ...] = (24000, 44100, 16000, 8000)
# mp3 is left out on purpose: playing it would need a decoder we do not depend on.
OUTPUT_FORMATS: Tuple[str, ...] = ("pcm", "wav", "ulaw", "alaw")
SPEED_RANGE = (0.5, 2.0)

_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
#: Settings a running Speaker may change with ``update()`` (the rest shape the audio stream).
UPDATABLE = ("voice", "model", "language", "speed")


class Settings(Record):
    """What a synthesis request asks for. Immutable: ``replace()`` makes a new one.

    ``voice=None`` means the model's default voice (``meher`` for the pro model,
    ``sophia`` for the base one); ``speed=None`` leaves the server's default (1.0).
    """

    __slots__ = ("voice", "model", "language", "speed", "sample_rate", "word_timestamps", "output_format")
    voice: str
    model: str
    language: str
    speed: Optional[float]
    sample_rate: int
    word_timestamps: bool
    output_format: str

    def __init__(self, voice: Optional[str] = None, model: str = "lightning_v3.1_pro", language: str = "en",
                 speed: Optional[float] = None, sample_rate: int = 24000, word_timestamps: bool = True,
                 output_format: str = "pcm") -> None:
        validate_model(model)
        if voice is None:
            voice = DEFAULT_VOICES[model]
        elif not isinstance(voice, str) or not _ID_RE.match(voice):
            raise ConfigurationError(f"voice must be a voice id such as 'meher'; got {voice!r}")
        if language not in LANGUAGES:
            raise ConfigurationError(
                f"language must be one of {' '.join(LANGUAGES)}; got {language!r}"
            )
        if speed is not None:
            if isinstance(speed, bool) or not isinstance(speed, (int, float)):
                raise ConfigurationError(f"speed must be a number; got {speed!r}")
            low, high = SPEED_RANGE
            if not (math.isfinite(speed) and low <= speed <= high):
                raise ConfigurationError(f"speed must be between {low} and {high}; got {speed!r}")
            speed = float(speed)
        if isinstance(sample_rate, bool) or sample_rate not in SAMPLE_RATES:
            raise ConfigurationError(
                f"sample_rate must be one of {', '.join(map(str, SAMPLE_RATES))}; got {sample_rate!r}"
            )
        if output_format not in OUTPUT_FORMATS:
            raise ConfigurationError(
                f"output_format must be one of {', '.join(OUTPUT_FORMATS)}; got {output_format!r}"
            )
        super().__init__(voice, model, language, speed, sample_rate, word_timestamps, output_format)

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` applied and validated (the model's default voice follows a model change)."""
        if "model" in changes and "voice" not in changes and self.voice == DEFAULT_VOICES[self.model]:
            changes["voice"] = None
        return Settings(**{**self._asdict(), **changes})


def validate_model(model: object) -> str:
    """``model`` if it is one of :data:`MODELS`, else ConfigurationError."""
    if model not in MODELS:
        raise ConfigurationError(f"model must be one of {', '.join(MODELS)}; got {model!r}")
    return str(model)


def validate_text(text: object) -> str:
    """Return ``text`` if it is a string with something to say, else raise ConfigurationError."""
    if not isinstance(text, str):
        raise ConfigurationError(f"text must be a str; got {type(text).__name__}")
    if not text.strip():
        raise ConfigurationError("text is empty: there is nothing to say")
    return text


def validate_id(value: str, what: str) -> str:
    """Check a client-chosen id against the server's allowed shape."""
    if not _ID_RE.match(value):
        raise ConfigurationError(f"{what} must match [A-Za-z0-9_.-]{{1,128}}; got {value!r}")
    return value


def resolve_api_key(api_key: Optional[str] = None) -> str:
    """``api_key``, else ``$SMALLEST_API_KEY``, stripped; "" when there is none."""
    return (api_key if api_key is not None else os.environ.get(API_KEY_ENV) or "").strip()


def require_api_key(api_key: Optional[str] = None) -> str:
    """:func:`resolve_api_key`, or ConfigurationError saying how to get one."""
    key = resolve_api_key(api_key)
    if not key:
        raise ConfigurationError(
            f"no API key: pass api_key= or set {API_KEY_ENV} (get one at https://waves.smallest.ai); "
            "to work offline, run the bundled emulator (python -m smallest_sync.emulator)")
    return key
