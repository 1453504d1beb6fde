"""Where played audio goes: nothing, a WAV file, a function, memory; the base class.

Three kinds of output, by who sets the pace (each kind has its pacer in
:mod:`smallest_sync.playback.pacers`):

* ``"device"`` – :class:`~smallest_sync.playback.device.DeviceOutput`: the sound
  card. Written a block at a time as its buffer frees up, so the card sets the pace.
* ``"clock"`` – :class:`NullOutput`: blocks are taken at real-time pace and thrown
  away (a sound card that nobody hears; used headless).
* ``"sink"`` – :class:`WavOutput`, :class:`CallbackOutput`, :class:`MemoryOutput`:
  audio is written as fast as it arrives, with no clock at all.

Every output is written by one thread, ``smallest-audio``, and never while the
player or the Speaker holds a lock: a :meth:`AudioOutput.write` may call any
public method of the Speaker (``interrupt()``, ``close()``, ``say()``...).
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, List, Optional, Sequence

import numpy as np

from ..errors import ConfigurationError

if TYPE_CHECKING:
    import wave

logger = logging.getLogger(__name__)

__all__ = ["AudioOutput", "NullOutput", "WavOutput", "CallbackOutput", "MemoryOutput"]


class AudioOutput:
    """Base class of outputs. Subclass it to send audio somewhere new.

    ``kind`` says who sets the pace (see the module docstring). Every kind
    implements :meth:`write`; device outputs also :meth:`room`, :attr:`capacity`
    and :meth:`discard_buffered`.
    """

    kind: str = "sink"
    #: clock outputs: frames per block pulled; device outputs: frames per device period
    block_frames: int = 0
    #: device outputs: frames the device buffers (its :meth:`room` when nothing is queued)
    capacity: int = 0

    def choose_rate(self, rates: Sequence[int]) -> int:
        """Which of the service's ``rates`` (in the Speaker's order of preference) to
        play at when the Speaker's ``sample_rate`` is left open: the first this output
        takes as it is. Called before :meth:`open`, on the thread creating the Speaker."""
        return rates[0]

    def open(self, sample_rate: int) -> None:
        """Prepare for int16 mono audio at ``sample_rate``. Called once, on the thread
        that creates the Speaker, before any :meth:`write`."""

    def write(self, pcm: "np.ndarray[Any, np.dtype[np.int16]]") -> None:
        """Take these samples.

        Runs on the ``smallest-audio`` thread, one call at a time, with no lock of
        the library held: it may call any public method of the Speaker, including
        ``interrupt()`` and ``close()``. A device output blocks until it has room
        (at most a block's worth at a time is given); other kinds should return
        quickly, since later audio waits for them. An exception fails what is playing.
        """
        raise NotImplementedError

    def room(self) -> int:
        """Device outputs: frames free in the device's buffer (its fill is
        :attr:`capacity` minus this: what plays before the next block)."""
        raise NotImplementedError

    def lag(self) -> float:
        """Device outputs: seconds of audio written that the output holds back before
        the device (a resampler's look-ahead), so it is heard that much later."""
        return 0.0

    def drain(self) -> None:
        """Device outputs: no more audio follows for now; push out what :meth:`lag` holds."""

    def discard_buffered(self) -> None:
        """Drop audio handed over but not yet heard, if the output can (interrupt)."""

    def reopen(self) -> None:
        """Device outputs: after a failure, release the device and open it again at the
        rate of :meth:`open` (the system's default device anew, where that was asked
        for). Raises AudioDeviceError while it cannot; outputs that cannot do this at
        all raise NotImplementedError, and are then lost for good. Runs on
        ``smallest-audio``."""
        raise NotImplementedError

    def latency(self) -> float:
        """Seconds between handing a sample over and it being heard, with the buffer full."""
        return 0.0

    def close(self) -> None:
        """Release the output. Idempotent. Called by ``Speaker.close()`` on its
        caller's thread, once ``smallest-audio`` has stopped."""


class NullOutput(AudioOutput):
    """Plays into nothing, in real time: ``speak()`` takes as long as the speech.

    Use it where there is no sound card but timing should be real (word events,
    interrupts). ``NullOutput(realtime=False)`` discards audio as fast as it comes.
    In real-time mode :meth:`write` receives each block (silence-padded, as a sound
    card would play it) at the moment it would start playing; subclass to observe.
    """

    def __init__(self, *, realtime: bool = True, block_ms: int = 20) -> None:
        self.kind = "clock" if realtime else "sink"
        self._block_ms = block_ms

    def open(self, sample_rate: int) -> None:
        self.block_frames = max(1, sample_rate * self._block_ms // 1000)

    def write(self, pcm: "np.ndarray[Any, np.dtype[np.int16]]") -> None:
        pass

    def __repr__(self) -> str:
        return f"NullOutput(realtime={self.kind == 'clock'})"


class WavOutput(AudioOutput):
    """Writes everything played to a mono 16-bit WAV file (stdlib ``wave``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._wav: Optional[wave.Wave_write] = None
        self._file: Optional[BinaryIO] = None

    def open(self, sample_rate: int) -> None:
        import wave  # only WAV outputs pay for it

        # Open the file ourselves: wave.open(path) that fails leaves a half-built
        # writer whose __del__ prints a stray traceback.
        try:
            self._file = open(self.path, "wb")
        except OSError as exc:
            raise ConfigurationError(f"cannot write WAV file {self.path!r}: {exc.strerror or exc}") from exc
        wav = wave.open(self._file, "wb")
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        self._wav = wav

    def write(self, pcm: "np.ndarray[Any, np.dtype[np.int16]]") -> None:
        if self._wav is not None:
            self._wav.writeframes(pcm.astype("<i2", copy=False).tobytes())

    def close(self) -> None:
        wav, self._wav = self._wav, None
        file, self._file = self._file, None
        try:
            if wav is not None:
                wav.close()  # writes the header's sizes; a file it did not open stays open
        finally:
            if file is not None:
                file.close()

    def __repr__(self) -> str:
        return f"WavOutput({self.path!r})"


class CallbackOutput(AudioOutput):
    """Hands each block of played samples to a function.

    The function runs on the ``smallest-audio`` thread with no library lock held
    (so it may call ``interrupt()``, ``say()`` or ``close()``). It gets a read-only
    int16 array and should return quickly, since later audio waits for it.
    """

    def __init__(self, function: Callable[["np.ndarray[Any, np.dtype[np.int16]]"], object]) -> None:
        self._function = function

    def write(self, pcm: "np.ndarray[Any, np.dtype[np.int16]]") -> None:
        self._function(pcm)

    def __repr__(self) -> str:
        return f"CallbackOutput({self._function!r})"


class MemoryOutput(AudioOutput):
    """Keeps everything played in memory; :meth:`samples` returns it (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _blocks: written by the player, read by anyone
        self._blocks: List["np.ndarray[Any, np.dtype[np.int16]]"] = []

    def write(self, pcm: "np.ndarray[Any, np.dtype[np.int16]]") -> None:
        with self._lock:
            self._blocks.append(pcm.copy())

    def samples(self) -> "np.ndarray[Any, np.dtype[np.int16]]":
        with self._lock:
            return np.concatenate(self._blocks) if self._blocks else np.zeros(0, np.int16)

    def __repr__(self) -> str:
        return "MemoryOutput()"
