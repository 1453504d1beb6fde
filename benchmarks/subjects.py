"""The clients being measured ("subjects"), behind one small interface.

Figures talk to a :class:`Subject`, never to a library directly. Ours is
:class:`SmallestSync` (:data:`SUBJECTS`); the peers (the official ``smallestai``
SDK, pipecat's Smallest TTS service) subclass :class:`Subject` too, in
:mod:`benchmarks.peers`, and run in worker processes of their own virtualenv.
Every figure a subject can support gets a value in its column; what it cannot
do raises :class:`Unsupported` with the precise reason, shown as ``n/a``.

What a subject must offer:

* ``open(base_url, sample_rate=, output=, on_write=)``: connect (warm) to the
  server at ``base_url`` (an emulator, ``ws://127.0.0.1:PORT``). ``output`` is
  ``"sink"`` (hand each block of PCM to ``on_write(pcm)`` on whatever thread the
  client delivers audio, as fast as it comes: this is where "first audio" is
  timed), ``"device"`` (PortAudio's default device), ``"clock"`` (discarded at
  real-time pace) or ``"discard"`` (discarded as fast as it comes).
* ``say(text) -> Handle`` (returns at once), ``interrupt()``, ``close()``.
* ``Handle.wait()``; ``Handle.first_audio_at`` (``time.monotonic()`` when the first
  sample was handed to the output), ``taken`` (samples handed over so far),
  ``duration`` (seconds of audio played) when the client can tell.
* optionally ``buffered_seconds()``, ``output_latency()`` and ``frame_decoder()``
  (a fresh per-request function: server text frame -> int16 samples, for the
  decode-throughput figure).
* ``no_interrupt``: None, or why the client cannot stop speech in progress (the
  after-interrupt figures then show it, and only the warm trials are run).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Type

import numpy as np

from .common import OURS


class Unsupported(Exception):
    """This subject cannot be measured on this figure (shown as n/a)."""


class Handle:
    """One utterance of a subject."""

    @property
    def first_audio_at(self) -> Optional[float]:
        """``time.monotonic()`` when the first sample was handed to the output."""
        return None

    @property
    def heard_at(self) -> Optional[float]:
        """When the first sample was heard (handed over + the device's delay)."""
        return None

    def wait(self, timeout: Optional[float] = None) -> bool:
        raise NotImplementedError

    @property
    def taken(self) -> int:
        raise Unsupported("samples taken")

    @property
    def duration(self) -> float:
        raise Unsupported("duration")

    def times(self) -> Dict[str, Optional[float]]:
        """Client-side monotonic times of the request's life, where known."""
        return {}

    @property
    def error(self) -> Optional[BaseException]:
        """Why the utterance failed, if it did (peers' ``wait()`` does not raise it)."""
        return None


class Subject:
    name = "?"
    #: Why this client cannot interrupt speech in progress (None: it can).
    no_interrupt: Optional[str] = None
    #: How its socket library hands it a text frame (what ``frame_decoder()`` is fed).
    frame_type: type = str

    def open(self, base_url: str, *, sample_rate: int = 24000, output: str = "sink",
             on_write: Optional[Callable[[Any], None]] = None) -> None:
        raise NotImplementedError

    def say(self, text: str) -> Handle:
        raise NotImplementedError

    def speak(self, text: str, timeout: float = 30.0) -> Handle:
        handle = self.say(text)
        if not handle.wait(timeout):
            raise TimeoutError(f"{self.name}: {text!r} not heard within {timeout} s")
        return handle

    def interrupt(self) -> None:
        raise Unsupported(self.no_interrupt or "interrupt")

    def close(self) -> None:
        raise NotImplementedError

    def buffered_seconds(self) -> float:
        raise Unsupported("buffered seconds")

    def output_latency(self) -> float:
        raise Unsupported("output latency")

    def device_flushed_at(self) -> Optional[float]:
        """Monotonic time the client last dropped its device buffer (None: it never does)."""
        return None

    def frame_decoder(self) -> Callable[[Any], Any]:
        """A fresh decoder for one request's frames: server text frame (a :attr:`frame_type`)
        -> int16 samples."""
        raise Unsupported("frame decoder")

    def __enter__(self) -> "Subject":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ----- smallest_sync -------------------------------------------------------------------------
class _SmallestHandle(Handle):
    def __init__(self, utterance: Any) -> None:
        self.utterance = utterance

    def wait(self, timeout: Optional[float] = None) -> bool:
        return bool(self.utterance.wait(timeout))

    @property
    def first_audio_at(self) -> Optional[float]:
        value: Optional[float] = self.utterance.track.first_taken_at
        return value

    @property
    def heard_at(self) -> Optional[float]:
        value: Optional[float] = self.utterance.heard_at
        return value

    @property
    def taken(self) -> int:
        return int(self.utterance.track.taken)

    @property
    def duration(self) -> float:
        return float(self.utterance.duration)

    @property
    def error(self) -> Optional[BaseException]:
        value: Optional[BaseException] = self.utterance.error
        return value

    def times(self) -> Dict[str, Optional[float]]:
        u = self.utterance
        return {"queued": u.queued_at, "sent": u.sent_at, "first_chunk": u.first_chunk_at,
                "first_taken": u.track.first_taken_at, "heard": u.heard_at}


class SmallestSync(Subject):
    """This repository's ``smallest_sync.Speaker``."""

    name = OURS
    frame_type = bytes  # the reader's websocket-client recv_data() gives bytes

    def __init__(self) -> None:
        self.speaker: Any = None

    def open(self, base_url: str, *, sample_rate: int = 24000, output: str = "sink",
             on_write: Optional[Callable[[Any], None]] = None) -> None:
        from smallest_sync import AudioOutput, NullOutput, Speaker

        class _Sink(AudioOutput):
            kind = "sink"

            def write(self, pcm: "np.ndarray[Any, Any]") -> None:
                if on_write is not None:
                    on_write(pcm)

        spec: Any
        if output == "sink":
            spec = _Sink()
        elif output == "device":
            spec = None
        elif output == "device48":  # the default device run at 48 kHz: what is played is resampled
            from smallest_sync import DeviceOutput

            spec = DeviceOutput(None, device_rate=48000)
        elif output == "clock":
            spec = NullOutput()
        elif output == "discard":
            spec = NullOutput(realtime=False)
        else:
            raise ValueError(output)
        self.speaker = Speaker(api_key="sk_benchmark", base_url=base_url, sample_rate=sample_rate, output=spec)
        # Warm: the socket opens in the background; one round trip proves it is up.
        self.speak("Warm up.")

    def say(self, text: str) -> Handle:
        return _SmallestHandle(self.speaker.say(text))

    def interrupt(self) -> None:
        self.speaker.interrupt()

    def close(self) -> None:
        if self.speaker is not None:
            self.speaker.close()
            self.speaker = None

    def buffered_seconds(self) -> float:
        return float(self.speaker._player.buffered_seconds)

    def output_latency(self) -> float:
        return float(self.speaker._player.latency())

    def device_flushed_at(self) -> Optional[float]:
        value: Optional[float] = self.speaker._player.flushed_at
        return value

    def frame_decoder(self) -> Callable[[bytes], Any]:
        from smallest_sync.net.protocol import PcmDecoder, parse_frame

        decode = PcmDecoder("pcm").decode

        def frame_to_pcm(raw: bytes) -> Any:
            return decode(parse_frame(raw).audio)  # type: ignore[union-attr]

        return frame_to_pcm


#: Subjects measured in this process; ours first (targets are judged on it).
#: Peers are listed in :data:`benchmarks.peers.PEERS`.
SUBJECTS: List[Type[Subject]] = [SmallestSync]


def by_name(name: str) -> Subject:
    """A fresh subject, ours or a peer (importing a peer needs the peers' venv)."""
    for cls in SUBJECTS:
        if cls.name == name:
            return cls()
    from .peers import load

    return load(name)()


def wait_first_audio(handle: Handle, timeout: float = 5.0) -> Optional[float]:
    """Poll (0.2 ms) until ``handle`` has handed audio to the output; its time."""
    deadline = time.monotonic() + timeout
    while handle.first_audio_at is None:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.0002)
    return handle.first_audio_at
