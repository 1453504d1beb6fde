"""A local emulator of Smallest AI's Waves live TTS WebSocket service.

For tests, offline demos and trying an app without an API key::

    from smallest_sync.emulator import Emulator, EmulatorConfig, synthesize

    with Emulator(EmulatorConfig(realtime_factor=0)) as emu:
        ...  # point a client at emu.base_url; inspect emu.served afterwards

or from a shell: ``python -m smallest_sync.emulator --port 8765``.

The emulator is independent of the client half of ``smallest_sync``. It needs
numpy and ``websockets`` (the ``emulator`` extra) and, optionally, espeak-ng.
"""

from __future__ import annotations

from .catalog import BASE_LANGUAGES, MODELS, PRO_LANGUAGES, SAMPLE_RATES, VOICES, WORD_TIMESTAMP_VOICES
from .config import EmulatorConfig
from .g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from .messages import join_fragments
from .records import Handshake, Received, ServedRequest
from .server import LIVE_PATH, VOICES_PATH, Emulator
from .voice import TONE_PALETTE, synthesize, tone_frequency

__all__ = [
    "BASE_LANGUAGES",
    "Emulator",
    "EmulatorConfig",
    "Handshake",
    "LIVE_PATH",
    "MODELS",
    "PRO_LANGUAGES",
    "Received",
    "SAMPLE_RATES",
    "ServedRequest",
    "TONE_PALETTE",
    "VOICES",
    "VOICES_PATH",
    "WORD_TIMESTAMP_VOICES",
    "alaw_decode",
    "alaw_encode",
    "join_fragments",
    "synthesize",
    "tone_frequency",
    "ulaw_decode",
    "ulaw_encode",
]
