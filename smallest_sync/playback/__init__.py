"""Playback: the player's queue, the pacers that move it to an output, the outputs.

``make_output`` turns the Speaker's ``output=`` argument into an output.
"""
from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np

from ..errors import ConfigurationError
from .device import DeviceOutput
from .outputs import AudioOutput, CallbackOutput, NullOutput, WavOutput

__all__ = ["OutputSpec", "make_output"]

OutputSpec = Union[None, int, str, AudioOutput, Callable[["np.ndarray[Any, np.dtype[np.int16]]"], object]]


def make_output(spec: OutputSpec) -> AudioOutput:
    """Turn the ``output=`` argument of Speaker into an :class:`AudioOutput`.

    None → default device; int, or a string of digits → device index; ``"null"``
    → :class:`NullOutput`; a name ending in ``.wav`` → :class:`WavOutput`; another
    str → device name; an AudioOutput → itself; any other callable →
    :class:`CallbackOutput`.
    """
    if spec is None or (isinstance(spec, int) and not isinstance(spec, bool)):
        return DeviceOutput(spec)
    if isinstance(spec, AudioOutput):
        return spec
    if isinstance(spec, str):
        if spec == "null":
            return NullOutput()
        if spec.lower().endswith(".wav"):
            return WavOutput(spec)
        if not spec:
            raise ConfigurationError("output must not be an empty string")
        return DeviceOutput(int(spec) if spec.isdecimal() else spec)
    if callable(spec):
        return CallbackOutput(spec)
    raise ConfigurationError(f"output must be None, a device index or name, 'null', a .wav path, or a callable; got {spec!r}")
