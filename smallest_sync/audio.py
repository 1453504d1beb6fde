"""Where played audio goes: the sound card (PyAudio), nothing, a WAV file, a function.

Three kinds of output, by who sets the pace:

* ``"device"`` – :class:`DeviceOutput`: PortAudio's own thread pulls samples
  through a callback at the hardware's pace.
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

#: PortAudio block of :class:`DeviceOutput`: each block wakes PortAudio's thread, Python's
#: callback and the sound server's client; 30 ms costs ~0.9 % of a core per second of
#: speech here against 1.1-1.2 % for 20 ms, and is heard ~30 ms later (two blocks queued).
DEFAULT_BLOCK_MS = 30

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

#: Called by a pulling output: (frames wanted, seconds until they are heard) -> int16 samples.
Render = Callable[[int, float], "np.ndarray[Any, np.dtype[np.int16]]"]


class AudioOutput:
    """Base class of outputs. Subclass it to send audio somewhere new.

    ``kind`` says who sets the pace (see the module docstring). Sinks implement
    :meth:`write`; pulling outputs implement :meth:`start` and call ``render``.
    """

    kind: str = "sink"
    #: frames per block a clock output pulls
    block_frames: int = 0

    def open(self, sample_rate: int) -> None:
        """Prepare for int16 mono audio at ``sample_rate``. Called once, on the player's thread."""

    def start(self, render: Render) -> None:
        """Pulling outputs: begin pulling from ``render``."""
        raise NotImplementedError

    def write(self, pcm: "np.ndarray[Any, np.dtype[np.int16]]") -> None:
        """Sinks: take these samples (runs on the player's thread)."""
        raise NotImplementedError

    def discard_buffered(self) -> None:
        """Drop audio handed over but not yet heard, if the output can (interrupt)."""

    def suspend(self) -> None:
        """Pulling outputs: stop pulling for now (nothing to play); :meth:`resume` restarts."""

    def resume(self) -> None:
        """Pulling outputs: pull again after :meth:`suspend`."""

    def latency(self) -> float:
        """Seconds between handing a sample over and it being heard."""
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
    """A PortAudio output stream (via PyAudio) in callback mode.

    PortAudio's thread runs the callback, which only copies samples the player
    already decoded: no allocation beyond one block, no locks held for long, no
    user code. ``device`` is an index, a (part of a) device name, or None for the
    system default.
    """

    kind = "device"

    def __init__(self, device: Union[int, str, None] = None, *, block_ms: int = DEFAULT_BLOCK_MS) -> None:
        self.device = device
        self._block_ms = block_ms
        self._pa: Any = None
        self._stream: Any = None
        self._render: Optional[Render] = None
        self._sample_rate = 0
        self._latency = 0.0

    def open(self, sample_rate: int) -> None:
        pyaudio = _import_pyaudio()
        self._pa = pyaudio.PyAudio()
        try:
            index = _resolve_device(self._pa, self.device)
        except AudioDeviceError:
            self.close()
            raise
        self._sample_rate = sample_rate
        self.block_frames = max(1, sample_rate * self._block_ms // 1000)
        self._index = index

    def start(self, render: Render) -> None:
        pyaudio = _import_pyaudio()
        rate = self._sample_rate
        self._render = render
        carry_on = pyaudio.paContinue

        def callback(in_data: Any, frame_count: int, time_info: Dict[str, float], status: int) -> Tuple[bytes, int]:
            dac, now = time_info["output_buffer_dac_time"], time_info["current_time"]
            delay = dac - now if dac > 0 and now > 0 and dac >= now else self._latency
            return render(frame_count, delay).tobytes(), carry_on

        try:
            self._stream = self._pa.open(
                format=pyaudio.paInt16, channels=1, rate=rate, output=True,
                output_device_index=self._index, frames_per_buffer=self.block_frames,
                stream_callback=callback,
            )
        except (IOError, OSError, ValueError) as exc:
            name = "the default device" if self.device is None else repr(self.device)
            raise AudioDeviceError(f"cannot open {name} for {rate} Hz mono output: {exc}") from exc
        self._latency = float(self._stream.get_output_latency())

    def latency(self) -> float:
        return self._latency

    def discard_buffered(self) -> None:
        """Drop what the device buffered, now: close the stream and open a new one.

        PortAudio discards pending buffers only on Pa_AbortStream, which PyAudio
        does not expose; Pa_CloseStream aborts an active stream first, on every
        host API. (Pa_StopStream, the other choice, waits up to a block for the
        callback thread and may drain.) Measured here: what is heard after
        ``interrupt()`` went from 17 ms to 7 ms; the reopen takes a few ms on the
        player thread while nothing is queued to play.
        """
        stream, render = self._stream, self._render
        if stream is None or render is None:
            return
        self._stream = None
        try:
            stream.close()
        except (IOError, OSError) as exc:
            raise AudioDeviceError(f"audio device failed while flushing: {exc}") from exc
        self.start(render)

    def suspend(self) -> None:
        """Stop the stream: an idle PortAudio stream still costs ~1 % of a core."""
        if self._stream is not None:
            try:
                self._stream.stop_stream()
            except (IOError, OSError) as exc:
                raise AudioDeviceError(f"audio device failed while stopping: {exc}") from exc

    def resume(self) -> None:
        """Start the stream again (measured here: 0.5 ms to the first callback)."""
        if self._stream is not None:
            try:
                self._stream.start_stream()
            except (IOError, OSError) as exc:
                raise AudioDeviceError(f"audio device failed to restart: {exc}") from exc

    def close(self) -> None:
        stream, self._stream = self._stream, None
        self._render = None
        if stream is not None:
            try:
                stream.close()  # aborts a running stream: no stop first (it may wait, and a failed stop left it open)
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
