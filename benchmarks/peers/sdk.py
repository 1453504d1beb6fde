"""The official SDK's sync client, ``smallestai.waves.WavesStreamingTTS``, as a subject.

How it is used, as its docstring shows: ``synthesize(text)`` is a generator of
raw PCM ``bytes`` chunks (int16 little-endian, mono). Every call opens a new
WebSocket (``_connect``: a ``WebSocketApp`` on a new thread, then a
``time.sleep(0.1)`` poll until ``on_open`` has run), sends one request, yields
the chunks until the server's ``complete`` frame, and closes the socket. There
is no connection to keep warm: "warm" here is the second and later calls, each
paying a connect, which is what a user of this class gets.

The wrapper runs one consumer thread (``bench-smallestai``) that takes the
texts of ``say()`` in order, iterates ``synthesize()`` and turns each chunk into
samples with ``np.frombuffer`` (what a caller must do to use them), handing them
to ``on_write`` for the ``"sink"`` output or dropping them for ``"discard"``.

What it cannot do, and why (the figures show these reasons):

* play audio: it yields bytes and has no output device code ("no playback");
* interrupt: there is no call to stop a synthesis in progress. The generator
  could be abandoned by the thread iterating it, but that is the caller's code,
  not the SDK's, and ``close()`` from another thread leaves the iterating thread
  blocked up to 1 s in ``audio_queue.get(timeout=1.0)`` before it notices.

The request matches ours: voice ``meher``, model ``lightning_v3.1_pro`` (the
SDK's default model is ``lightning_v3.1`` and it has no default voice); the SDK
sends no ``word_timestamps`` and no ``complete_backoff_ms``.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Optional, Tuple

import numpy as np

from ..subjects import Handle, Subject, Unsupported
from .handle import StreamHandle

logger = logging.getLogger(__name__)

LIVE_PATH = "/waves/v1/tts/live"  # the service's path (smallest_sync.emulator.LIVE_PATH); the SDK adds nothing
VOICE = "meher"
MODEL = "lightning_v3.1_pro"
NO_PLAYBACK = "no playback: WavesStreamingTTS yields PCM bytes and plays nothing"
_JOIN_TIMEOUT = 15.0  # a synthesize() in progress ends within the server's complete + 1 s


class OfficialSDK(Subject):
    """``smallestai.waves.WavesStreamingTTS`` (PyPI ``smallestai``)."""

    name = "smallestai"
    no_interrupt = ("no interrupt: WavesStreamingTTS has no call to stop a synthesis in progress "
                    "(only abandoning its generator from the iterating thread)")

    def __init__(self) -> None:
        self._tts: Any = None
        self._thread: Optional[threading.Thread] = None
        self._jobs: "queue.Queue[Optional[Tuple[str, StreamHandle]]]" = queue.Queue()
        self._rate = 24000
        self._on_write: Optional[Callable[[Any], None]] = None

    def open(self, base_url: str, *, sample_rate: int = 24000, output: str = "sink",
             on_write: Optional[Callable[[Any], None]] = None) -> None:
        if output not in ("sink", "discard"):
            raise Unsupported(NO_PLAYBACK)
        self._tts = _new_client(sample_rate)
        self._tts.ws_url = base_url.rstrip("/") + LIVE_PATH
        self._rate = sample_rate
        self._on_write = on_write if output == "sink" else None
        # Daemon so a wedged synthesize() cannot keep the worker alive; close() joins it.
        self._thread = threading.Thread(target=self._consume, name="bench-smallestai", daemon=True)
        self._thread.start()
        self.speak("Warm up.")

    def _consume(self) -> None:
        """Consumer thread: one synthesize() after another, in say() order."""
        while True:
            job = self._jobs.get()
            if job is None:
                return
            text, handle = job
            try:
                for chunk in self._tts.synthesize(text):
                    handle.feed(np.frombuffer(chunk, dtype="<i2"))
            except Exception as exc:  # reported through the handle, like ours
                logger.warning("smallestai: %r failed: %s", text, exc)
                handle.finish(exc)
            else:
                handle.finish()

    def say(self, text: str) -> Handle:
        handle = StreamHandle(self._rate, self._on_write)
        self._jobs.put((text, handle))
        return handle

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._jobs.put(None)
        thread.join(_JOIN_TIMEOUT)
        if thread.is_alive():
            logger.warning("smallestai: consumer thread still running after %.0f s", _JOIN_TIMEOUT)
        self._tts.close()

    def frame_decoder(self) -> Callable[[str], Any]:
        """The SDK's own ``_on_message`` (json.loads, base64 decode, queue), then
        ``np.frombuffer``: one server text frame to int16 samples."""
        tts = _new_client(24000)
        handle_message = tts._on_message
        take = tts.audio_queue.get_nowait

        def frame_to_pcm(raw: str) -> Any:
            handle_message(None, raw)
            return np.frombuffer(take(), dtype="<i2")

        return frame_to_pcm


def _new_client(sample_rate: int) -> Any:
    from smallestai.waves import TTSConfig, WavesStreamingTTS  # type: ignore[import-not-found]  # peers venv

    return WavesStreamingTTS(TTSConfig(voice_id=VOICE, api_key="sk_benchmark", model=MODEL,
                                       sample_rate=sample_rate))
