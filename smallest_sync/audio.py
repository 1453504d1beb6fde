"""Where played audio goes: the sound card (PyAudio), nothing, a WAV file, a function.

Three kinds of output, by who sets the pace:

* ``"device"`` – :class:`DeviceOutput`: the sound card. The player's
  ``smallest-audio`` thread writes it a block at a time; each write returns when
  the card has room for it, so the card sets the pace.
* ``"clock"`` – :class:`NullOutput`: the player's thread pulls samples at real-time
  pace and throws them away (a sound card that nobody hears; used headless).
* ``"sink"`` – :class:`WavOutput`, :class:`CallbackOutput`, :class:`MemoryOutput`:
  audio is written as fast as it arrives, with no clock at all.

PyAudio is imported only when a device is opened, so ``import smallest_sync``
works on machines without PortAudio.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from .errors import AudioDeviceError, ConfigurationError

if TYPE_CHECKING:
    import wave

logger = logging.getLogger(__name__)

#: PortAudio block (period) of :class:`DeviceOutput`. The device buffers three of them,
#: and ``smallest-audio`` wakes about once per block to write one. Each wake-up costs
#: CPU, so the block is long: measured here, a second of speech costs ~0.7 % of a core
#: with 100 ms blocks, ~0.9 % with 60 ms and ~1.0 % with 30 ms. What a user hears does
#: not depend on it: speech after a quiet spell goes into an empty buffer and is heard
#: at once, interrupt() drops the buffer, and pause() drops it too and queues again
#: what it held unheard. A longer buffer only gives more slack to a late wake-up.
DEFAULT_BLOCK_MS = 100

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
]

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

    def open(self, sample_rate: int) -> None:
        """Prepare for int16 mono audio at ``sample_rate``. Called once, by the player's creator."""

    def write(self, pcm: "np.ndarray[Any, np.dtype[np.int16]]") -> None:
        """Take these samples (runs on a player thread). A device output blocks until
        it has room for them (at most a block's worth at a time is given)."""
        raise NotImplementedError

    def room(self) -> int:
        """Device outputs: frames free in the device's buffer (its fill is
        :attr:`capacity` minus this: what plays before the next block)."""
        raise NotImplementedError

    def discard_buffered(self) -> None:
        """Drop audio handed over but not yet heard, if the output can (interrupt)."""

    def latency(self) -> float:
        """Seconds between handing a sample over and it being heard, with the buffer full."""
        return 0.0

    def close(self) -> None:
        """Release the output. Idempotent."""


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
    """Hands each block of played samples to a function, on the player's thread.

    The function gets a read-only int16 array; it should return quickly, since
    later audio waits for it.
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


def _import_pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as exc:  # PortAudio or the PyAudio wheel missing
        raise AudioDeviceError(
            "PyAudio is not available, so audio cannot be played on a device "
            f"({exc}); install PortAudio and PyAudio, or use output='null' or 'file.wav'"
        ) from exc
    return pyaudio


def list_output_devices() -> List[Dict[str, Any]]:
    """Output-capable PortAudio devices: dicts with ``index``, ``name``, ``channels``,
    ``default_sample_rate``, ``host_api`` and ``is_default``."""
    pyaudio = _import_pyaudio()
    pa = pyaudio.PyAudio()
    try:
        try:
            default = pa.get_default_output_device_info()["index"]
        except (IOError, OSError):
            default = None
        devices = []
        for index in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(index)
            if info.get("maxOutputChannels", 0) > 0:
                devices.append({
                    "index": index,
                    "name": info["name"],
                    "channels": info["maxOutputChannels"],
                    "default_sample_rate": info["defaultSampleRate"],
                    "host_api": pa.get_host_api_info_by_index(info["hostApi"])["name"],
                    "is_default": index == default,
                })
        return devices
    finally:
        pa.terminate()


def _resolve_device(pa: Any, device: Union[int, str, None]) -> Optional[int]:
    if device is None:
        try:
            pa.get_default_output_device_info()
        except (IOError, OSError) as exc:
            raise AudioDeviceError(f"no default audio output device: {exc}") from exc
        return None
    outputs: List[Tuple[int, str]] = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        if info.get("maxOutputChannels", 0) > 0:
            outputs.append((index, str(info["name"])))
    if isinstance(device, int):
        if any(index == device for index, _ in outputs):
            return device
        raise AudioDeviceError(f"no output device with index {device}; outputs: {outputs}")
    exact = [index for index, name in outputs if name == device]
    partial = [index for index, name in outputs if device.lower() in name.lower()]
    matches = exact or partial
    if len(matches) == 1:
        return matches[0]
    what = "matches several" if matches else "matches no"
    raise AudioDeviceError(f"device name {device!r} {what} output device; outputs: {outputs}")


class DeviceOutput(AudioOutput):
    """A PortAudio output stream (via PyAudio) in blocking mode.

    The stream runs from :meth:`open` to :meth:`close`. The player's
    ``smallest-audio`` thread writes one block at a time while audio is queued, and
    nothing while there is none: the stream then underruns, which costs nothing
    (~0.03 % of a core here), and the next write lands in an empty buffer and is
    heard at once.

    Why not PortAudio's callback mode? A callback stream that runs idle keeps its
    buffer full of silence, so the next sound waits behind it (measured here: 88 ms
    with 30 ms blocks), and each callback makes PortAudio's thread take the GIL
    (~0.25 % of a core more at the same block size). Why not writes sized by
    :meth:`room` without blocking? Through PulseAudio's ALSA plugin the free space
    read between writes lags, and heard times drifted by ~2 ms a second until the
    buffer ran dry; read right after a blocking write it is exact (within 0.5 ms of
    the recorded sink).

    ``device`` is an index, a (part of a) device name, or None for the system default.
    """

    kind = "device"

    def __init__(self, device: Union[int, str, None] = None, *, block_ms: int = DEFAULT_BLOCK_MS) -> None:
        self.device = device
        self._block_ms = block_ms
        self._pa: Any = None
        self._stream: Any = None
        self._index: Optional[int] = None
        self._sample_rate = 0
        self._latency = 0.0

    def open(self, sample_rate: int) -> None:
        pyaudio = _import_pyaudio()
        self._pa = pyaudio.PyAudio()
        self._sample_rate = sample_rate
        self.block_frames = max(1, sample_rate * self._block_ms // 1000)
        try:
            self._index = _resolve_device(self._pa, self.device)
            self._open_stream()
        except AudioDeviceError:
            self.close()
            raise

    def _open_stream(self) -> None:
        pyaudio = _import_pyaudio()
        try:
            stream = self._pa.open(
                format=pyaudio.paInt16, channels=1, rate=self._sample_rate, output=True,
                output_device_index=self._index, frames_per_buffer=self.block_frames,
            )
        except (IOError, OSError, ValueError) as exc:
            name = "the default device" if self.device is None else repr(self.device)
            raise AudioDeviceError(f"cannot open {name} for {self._sample_rate} Hz mono output: {exc}") from exc
        self._stream = stream
        self._latency = float(stream.get_output_latency())
        self.capacity = self.room()  # nothing written yet: the whole buffer is free

    def room(self) -> int:
        stream = self._stream
        if stream is None:
            return 0
        try:
            frames = int(stream.get_write_available())
        except (IOError, OSError) as exc:
            raise AudioDeviceError(f"audio device failed: {exc}") from exc
        if frames < 0:  # a PortAudio error code: PyAudio passes it through
            raise AudioDeviceError(f"audio device failed (PortAudio error {frames})")
        return frames

    def write(self, pcm: "np.ndarray[Any, np.dtype[np.int16]]") -> None:
        if self._stream is None:
            return
        try:
            # Blocks until the device has room. An underrun (nothing was queued for a
            # while) is normal here, not an error.
            self._stream.write(pcm.tobytes(), len(pcm), exception_on_underflow=False)
        except (IOError, OSError) as exc:
            raise AudioDeviceError(f"audio device failed while playing: {exc}") from exc

    def latency(self) -> float:
        return self._latency

    def discard_buffered(self) -> None:
        """Drop what the device buffered, now: close the stream and open a new one.

        PortAudio discards pending buffers only on Pa_AbortStream, which PyAudio
        does not expose; Pa_CloseStream aborts an active stream first, on every
        host API (Pa_StopStream, the other choice, drains). Measured here: the
        close and reopen take ~2 ms.
        """
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.close()
        except (IOError, OSError) as exc:
            raise AudioDeviceError(f"audio device failed while flushing: {exc}") from exc
        self._open_stream()

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()  # aborts: what is still buffered is dropped, not waited for
            except (IOError, OSError) as exc:
                logger.warning("closing the audio stream failed: %s", exc)
        pa, self._pa = self._pa, None
        if pa is not None:
            pa.terminate()

    def __repr__(self) -> str:
        return f"DeviceOutput({self.device!r})"


OutputSpec = Union[None, int, str, AudioOutput, Callable[["np.ndarray[Any, np.dtype[np.int16]]"], object]]


def make_output(spec: OutputSpec) -> AudioOutput:
    """Turn the ``output=`` argument of Speaker into an :class:`AudioOutput`.

    None → default device; int → device index; ``"null"`` → :class:`NullOutput`;
    a name ending in ``.wav`` → :class:`WavOutput`; another str → device name;
    an AudioOutput → itself; any other callable → :class:`CallbackOutput`.
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
        return DeviceOutput(spec)
    if callable(spec):
        return CallbackOutput(spec)
    raise ConfigurationError(f"output must be None, a device index or name, 'null', a .wav path, or a callable; got {spec!r}")
