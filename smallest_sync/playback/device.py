"""The sound card as an output: PortAudio (through PyAudio) in blocking mode.

A device is played at the service's rate when it takes it. When it does not (a
USB speaker that takes only 44.1 or 48 kHz, HDMI at 48 kHz stereo), the audio is
resampled to a rate it takes, with python-soxr: a streaming resampler that keeps
its state from block to block (so block edges do not click), costs a few
hundredths of a percent of a core, and ships wheels for ARM as well as x86. A
device that takes only stereo gets the same sound on both channels.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Sequence, Union

import numpy as np

from .._types import Pcm
from ..errors import AudioDeviceError
from .outputs import AudioOutput
from .portaudio import DEVICE_RATES, channels_for, list_output_devices, open_portaudio, resolve_device

logger = logging.getLogger(__name__)

__all__ = ["DeviceOutput", "list_output_devices", "DEFAULT_BLOCK_MS"]

#: PortAudio block (period) of :class:`DeviceOutput`; the device buffers three. The
#: writer wakes once per block, so a long block costs less CPU (docs/benchmarks.md);
#: what is heard does not depend on it, since interrupt() and pause() drop the buffer.
DEFAULT_BLOCK_MS = 100


class _Converter:
    """Mono int16 at the service's rate → what the device takes: another rate
    (streaming, stateful) and/or both channels of a stereo device.

    A resampler holds back its look-ahead. So that a device that ran dry gets a
    whole block at once (an ALSA device does not start on less than a period), the
    first block after a start is preceded by that much silence, which :meth:`held`
    counts as audio held back, so heard times stay exact.
    """

    def __init__(self, source_rate: int, device_rate: int, channels: int, block: int) -> None:
        self.device_rate, self.channels = device_rate, channels
        self._resampler: Any = None
        self._lead = 0  # device frames of silence before the first block after a start
        self._fresh = True
        if device_rate != source_rate:
            try:
                import soxr
            except ImportError as exc:
                raise AudioDeviceError(f"the device needs {device_rate} Hz and resampling needs python-soxr "
                                       f"(pip install soxr): {exc}") from exc
            # LQ: 16-bit precision (what is played), and the shortest look-ahead of soxr's
            # filters (about a millisecond from 24 kHz), which a start waits for.
            self._resampler = soxr.ResampleStream(source_rate, device_rate, 1, dtype="int16", quality="LQ")
            self._resampler.resample_chunk(np.zeros(block, np.int16))
            self._lead = round(self._resampler.delay())
            self._resampler.clear()

    def convert(self, pcm: Pcm, *, last: bool = False) -> Pcm:
        out = pcm
        if self._resampler is not None:
            out = self._resampler.resample_chunk(pcm, last=last)
            if self._fresh and not last:
                out = np.concatenate([np.zeros(self._lead, np.int16), out])
            self._fresh = last
            if last:
                self._resampler.clear()  # ready for the next stream of audio
        return np.repeat(out, 2) if self.channels == 2 else out  # interleaved: L R L R

    def held(self) -> float:
        """Seconds between a sample given to :meth:`convert` and the device having it
        (the resampler's look-ahead, or the silence a start will put first)."""
        if self._resampler is None:
            return 0.0
        return (self._lead if self._fresh else float(self._resampler.delay())) / self.device_rate

    def clear(self) -> None:
        if self._resampler is not None:
            self._resampler.clear()
            self._fresh = True


class DeviceOutput(AudioOutput):
    """A PortAudio output stream (via PyAudio) in blocking mode.

    The stream runs from :meth:`open` to :meth:`close`. The player's
    ``smallest-audio`` thread writes one block at a time while audio is queued, and
    nothing while there is none: the stream then underruns, which costs almost
    nothing, and the next write lands in an empty buffer and is heard at once.

    Why not PortAudio's callback mode? A callback stream that runs idle keeps its
    buffer full of silence, so the next sound waits behind it, and each callback
    makes PortAudio's thread take the GIL. Why not writes sized by :meth:`room`
    without blocking? Through PulseAudio's ALSA plugin the free space read between
    writes lags, so heard times drift until the buffer runs dry; read right after a
    blocking write it is exact (docs/benchmarks.md has the figures).

    ``device`` is an index, a (part of a) device name, or None for the system
    default. ``device_rate`` runs the device at that rate whatever the audio's
    (resampled when they differ); by default the audio's rate when the device
    takes it, else the device's own default rate, else a common one. Frames, :meth:`room` and :attr:`capacity` count samples at the rate
    the output was opened at, whatever rate the device itself runs at
    (:attr:`device_rate`).
    """

    kind = "device"

    def __init__(self, device: Union[int, str, None] = None, *, block_ms: int = DEFAULT_BLOCK_MS,
                 device_rate: Optional[int] = None) -> None:
        self.device = device
        self._block_ms = block_ms
        self._forced_rate = device_rate  # run the device at this rate, resampling to it
        self._pa: Any = None
        self._stream: Any = None
        self._index: Optional[int] = None
        self._sample_rate = 0
        self._latency = 0.0
        self._converter: Optional[_Converter] = None
        self.device_rate = 0  # what the device runs at (0 until opened)
        self.channels = 1

    def _portaudio(self) -> Any:
        if self._pa is None:
            self._pa = open_portaudio()
            try:
                self._index = resolve_device(self._pa, self.device)
            except AudioDeviceError:
                self.close()
                raise
        return self._pa

    def choose_rate(self, rates: Sequence[int]) -> int:
        """The first of ``rates`` the device plays without resampling (else the first)."""
        pa = self._portaudio()
        assert self._index is not None
        return next((rate for rate in rates if channels_for(pa, self._index, rate) is not None), rates[0])

    def open(self, sample_rate: int) -> None:
        self._sample_rate = sample_rate
        self.block_frames = max(1, sample_rate * self._block_ms // 1000)
        try:
            pa = self._portaudio()
            assert self._index is not None
            info = pa.get_device_info_by_index(self._index)
            rates = ((self._forced_rate,) if self._forced_rate else
                     (sample_rate, int(info.get("defaultSampleRate") or 0), *DEVICE_RATES))
            for rate in rates:
                channels = channels_for(pa, self._index, rate) if rate > 0 else None
                if channels is not None:
                    break
            else:
                raise AudioDeviceError(f"{self._name()} ({info.get('name')!r}) takes 16-bit audio at none of "
                                       f"{sorted(set(rates) - {0})} Hz")
            self.device_rate, self.channels = rate, channels
            if (rate, channels) != (sample_rate, 1):
                self._converter = _Converter(sample_rate, rate, channels, self.block_frames)
                logger.info("%s plays at %d Hz, %s: resampling %d Hz audio", self._name(), rate,
                            "stereo" if channels == 2 else "mono", sample_rate)
            self._open_stream()
        except AudioDeviceError:
            self.close()
            raise

    def _name(self) -> str:
        return "the default device" if self.device is None else repr(self.device)

    def _open_stream(self) -> None:
        import pyaudio

        device_block = max(1, self.device_rate * self._block_ms // 1000)
        try:
            stream = self._pa.open(
                format=pyaudio.paInt16, channels=self.channels, rate=self.device_rate, output=True,
                output_device_index=self._index, frames_per_buffer=device_block,
            )
        except (IOError, OSError, ValueError) as exc:
            raise AudioDeviceError(f"cannot open {self._name()} for {self.device_rate} Hz output: {exc}") from exc
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
        return frames if self.device_rate == self._sample_rate else frames * self._sample_rate // self.device_rate

    def write(self, pcm: Pcm) -> None:
        self._write(pcm if self._converter is None else self._converter.convert(pcm))

    def _write(self, data: Pcm) -> None:
        if self._stream is None or not len(data):
            return
        try:
            # Blocks until the device has room. An underrun (nothing was queued for a
            # while) is normal here, not an error.
            self._stream.write(data.tobytes(), len(data) // self.channels, exception_on_underflow=False)
        except (IOError, OSError) as exc:
            raise AudioDeviceError(f"audio device failed while playing: {exc}") from exc

    def lag(self) -> float:
        return 0.0 if self._converter is None else self._converter.held()

    def drain(self) -> None:
        if self._converter is not None:
            self._write(self._converter.convert(np.zeros(0, np.int16), last=True))

    def latency(self) -> float:
        return self._latency

    def reopen(self) -> None:
        """A new PortAudio session and stream: PortAudio lists devices when it starts,
        so a default device that changed (a USB speaker plugged in) is found then, as
        long as no other PyAudio instance in the program keeps PortAudio running."""
        self.close()
        self._converter = None
        self.open(self._sample_rate)

    def discard_buffered(self) -> None:
        """Drop what the device buffered, now: close the stream and open a new one.

        PortAudio discards pending buffers only on Pa_AbortStream, which PyAudio
        does not expose; Pa_CloseStream aborts an active stream first, on every
        host API (Pa_StopStream, the other choice, drains). Closing and reopening
        takes a couple of milliseconds. What the resampler held goes too.
        """
        stream, self._stream = self._stream, None
        if self._converter is not None:
            self._converter.clear()
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
