"""Audio outputs and device listing (kept as a module path on purpose).

The outputs live in :mod:`smallest_sync.playback`; this module re-exports them
for programs that import ``smallest_sync.audio``.
"""
from __future__ import annotations

from .playback import OutputSpec, make_output
from .playback.device import DEFAULT_BLOCK_MS, DeviceOutput, list_output_devices
from .playback.outputs import AudioOutput, CallbackOutput, MemoryOutput, NullOutput, WavOutput

__all__ = [
    "AudioOutput",
    "DeviceOutput",
    "NullOutput",
    "WavOutput",
    "CallbackOutput",
    "MemoryOutput",
    "OutputSpec",
    "make_output",
    "list_output_devices",
    "DEFAULT_BLOCK_MS",
]
