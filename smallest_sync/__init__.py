"""smallest_sync: speak text through Smallest AI's Waves live TTS from plain threads.

    from smallest_sync import Speaker
    with Speaker() as speaker:          # key from $SMALLEST_API_KEY
        speaker.speak("Hello there.")   # returns once it has been heard

The package logger is ``smallest_sync``; it has a NullHandler and nothing else.
"""

import logging
import typing

from ._version import __version__
from .playback.device import DeviceOutput, list_output_devices
from .playback.outputs import AudioOutput, CallbackOutput, MemoryOutput, NullOutput, WavOutput
from .errors import (
    APIError,
    AudioDeviceError,
    AuthenticationError,
    CertificateError,
    ConfigurationError,
    ProtocolError,
    SmallestConnectionError,
    SmallestError,
    SpeakerClosedError,
    SynthesisTimeout,
)
from .events import AudioEvent, DeviceEvent, EndEvent, ErrorEvent, StartEvent, WordEvent
from .settings import Settings
from .speaker import Speaker
from .utterance import Utterance

if typing.TYPE_CHECKING:
    from .voices import VoiceInfo, list_voices

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    "Speaker",
    "Utterance",
    "Settings",
    "StartEvent",
    "EndEvent",
    "ErrorEvent",
    "WordEvent",
    "AudioEvent",
    "DeviceEvent",
    "AudioOutput",
    "DeviceOutput",
    "NullOutput",
    "WavOutput",
    "CallbackOutput",
    "MemoryOutput",
    "list_output_devices",
    "list_voices",
    "VoiceInfo",
    "SmallestError",
    "ConfigurationError",
    "AuthenticationError",
    "SmallestConnectionError",
    "CertificateError",
    "APIError",
    "ProtocolError",
    "SynthesisTimeout",
    "AudioDeviceError",
    "SpeakerClosedError",
]

# Imported on first use: the voice catalogue is a feature few programs use, and
# its module (with the NamedTuple it defines) would slow every import.
_LAZY = {"VoiceInfo": "voices", "list_voices": "voices"}


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> typing.List[str]:
    return sorted(set(globals()) | set(_LAZY))
