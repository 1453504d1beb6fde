"""The sound card as an output: PortAudio (through PyAudio) in blocking mode.

PyAudio is imported only when a device is opened or listed, so ``import
smallest_sync`` works on machines without PortAudio.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import AudioDeviceError
from .outputs import AudioOutput

logger = logging.getLogger(__name__)

__all__ = ["DeviceOutput", "list_output_devices", "DEFAULT_BLOCK_MS"]

#: PortAudio block (period) of :class:`DeviceOutput`; the device buffers three. The
#: writer wakes once per block, so a long block costs less CPU (docs/benchmarks.md);
#: what is heard does not depend on it, since interrupt() and pause() drop the buffer.
DEFAULT_BLOCK_MS = 100

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
    nothing while there is none: the stream then underruns, which costs almost
    nothing, and the next write lands in an empty buffer and is
    heard at once.

    Why not PortAudio's callback mode? A callback stream that runs idle keeps its
    buffer full of silence, so the next sound waits behind it, and each callback
    makes PortAudio's thread take the GIL. Why not writes sized by :meth:`room`
    without blocking? Through PulseAudio's ALSA plugin the free space read between
    writes lags, so heard times drift until the buffer runs dry; read right after a
    blocking write it is exact (docs/benchmarks.md has the figures).

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
        host API (Pa_StopStream, the other choice, drains). Closing and reopening
        takes a couple of milliseconds.
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
