"""pipecat's ``SmallestTTSService`` in a pipeline, as a subject.

How a pipecat user gets audio out of a TTS service, and so what this does: a
``Pipeline([tts, transport.output()])`` run by a ``PipelineWorker`` under a
``WorkerRunner``, text queued as ``TTSSpeakFrame`` with ``worker.queue_frame()``,
and an ``InterruptionFrame`` queued the same way to cut speech off (what the
user-turn strategies push when someone barges in). Calling ``run_tts()`` by hand
was rejected: it only sends the request (it yields ``None``; the audio arrives
through the service's receive task into audio contexts that only the frame
machinery drains), so it would measure half a client. This is also the shape of
pipecat's own test helper (``pipecat.tests.utils.run_test``: source, processor,
sink, in a ``PipelineWorker``).

The pipeline ends in a small pass-through processor (the *tap*) that sees every
frame in order: ``TTSStartedFrame``/``TTSAudioRawFrame``/``TTSStoppedFrame`` of
each context, and the ``InterruptionFrame``. Outputs:

* ``"sink"`` / ``"discard"``: ``[tts, tap]``; the tap hands each audio frame's
  samples to ``on_write`` (or drops them). First audio is when the tap gets the
  first audio frame, as ours is when its player takes the first block.
* ``"device"``: ``[tts, LocalAudioTransport(...).output(), tap]``: PyAudio's
  default device (``pipecat-ai[local]``), blocking writes of 20 ms chunks from a
  one-thread executor. The output transport pushes each frame on after writing
  it, so the tap sees audio *handed to PortAudio*; pipecat reports no device
  time, so "heard" figures place it with the sink recording's clock.

The asyncio loop runs on its own thread (``bench-pipecat-loop``); ``say()`` and
``interrupt()`` hand frames to it with ``run_coroutine_threadsafe``. Utterances
are matched to audio contexts through the service's ``on_tts_request`` event
(context id, text; the benchmarks never say the same text twice at once).

Settings, and why:

* ``stop_frame_timeout_s=0.1`` (default 3 s): ``SmallestTTSService`` never closes
  an audio context on the server's ``complete``; a context ends (its
  ``TTSStoppedFrame``) only after this much silence, and the next
  ``TTSSpeakFrame`` is held until then (``pause_frame_processing``). With the
  default, back-to-back utterances are 3 s apart: 1000 of them would take an hour.
  The timeout is dead time between utterances, not on the path to first audio.
* ``enable_rtvi=False`` (as in pipecat's ``run_test``): RTVI is the client-UI
  protocol, not part of speaking; ``idle_timeout_secs=None``: no auto-cancel.
* loguru's default handler (DEBUG to stderr) is replaced by one at WARNING: ours
  logs nothing unless asked, and a log line per frame would be charged to pipecat.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import sys
import threading
from typing import Any, Callable, Deque, Dict, List, Optional

import numpy as np

from ..subjects import Handle, Subject, Unsupported
from .handle import StreamHandle

logger = logging.getLogger(__name__)

STOP_FRAME_TIMEOUT = 0.1
_START_TIMEOUT = 15.0  # pipeline up and socket open
_CALL_TIMEOUT = 5.0  # one frame queued on the loop
_STOP_TIMEOUT = 15.0
NO_FLOOD = ("no player queue bound to read: audio waits in the output transport's "
            "unbounded asyncio queue")


class Pipecat(Subject):
    """``pipecat.services.smallest.tts.SmallestTTSService`` (PyPI ``pipecat-ai``)."""

    name = "pipecat"

    def __init__(self) -> None:
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._reset(24000, None)

    def _reset(self, rate: int, on_write: Optional[Callable[[Any], None]]) -> None:
        """Fresh state for one open() (figures open and close a subject several times)."""
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._ready = threading.Event()
        self._failure: Optional[BaseException] = None
        self._worker: Any = None
        self._transport: Any = None
        self._rate = rate
        self._on_write = on_write
        #: Guards the three fields below: say()/interrupt() on the caller's thread,
        #: the tap and on_tts_request on the loop's.
        self._unbound: Dict[str, Deque[StreamHandle]] = {}  # said, no context yet
        self._contexts: Dict[str, StreamHandle] = {}
        self._victims: Deque[List[StreamHandle]] = collections.deque()  # per queued interrupt
        self._current: Optional[StreamHandle] = None  # last started context (loop thread only)

    # ----- caller's side ---------------------------------------------------------------
    def open(self, base_url: str, *, sample_rate: int = 24000, output: str = "sink",
             on_write: Optional[Callable[[Any], None]] = None) -> None:
        if output == "clock":
            raise Unsupported(NO_FLOOD)
        from loguru import logger as loguru  # type: ignore[import-not-found]

        loguru.remove()  # before pipecat's import-time banner
        loguru.add(sys.stderr, level="WARNING")
        self._reset(sample_rate, on_write if output == "sink" else None)
        # Daemon so a wedged loop cannot keep the worker process alive; close() joins it.
        self._thread = threading.Thread(target=self._run, args=(base_url, output), name="bench-pipecat-loop",
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            self.close()
            raise RuntimeError(f"pipecat: pipeline not started within {_START_TIMEOUT} s")
        if self._failure is not None:
            raise RuntimeError(f"pipecat: pipeline failed to start: {self._failure}") from self._failure
        self.speak("Warm up.")

    def say(self, text: str) -> Handle:
        from pipecat.frames.frames import TTSSpeakFrame  # type: ignore[import-not-found]

        handle = StreamHandle(self._rate, self._on_write)
        with self._lock:
            self._unbound.setdefault(text, collections.deque()).append(handle)
        self._submit(self._worker.queue_frame(TTSSpeakFrame(text)), wait=False)
        return handle

    def interrupt(self) -> None:
        """Queue an ``InterruptionFrame``; returns once the loop has taken it."""
        from pipecat.frames.frames import InterruptionFrame

        with self._lock:
            victims = [h for q in self._unbound.values() for h in q] + list(self._contexts.values())
            self._unbound.clear()  # their frames are dropped by the interruption
            self._victims.append([h for h in victims if not h.done])
        self._submit(self._worker.queue_frame(InterruptionFrame()), wait=True)

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._worker is not None and thread.is_alive():
            try:
                self._submit(self._worker.cancel(), wait=True, timeout=_STOP_TIMEOUT)
            except Exception as exc:  # the loop may already be gone; the join below says
                logger.warning("pipecat: cancel failed: %s", exc)
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            logger.warning("pipecat: loop thread still running after %.0f s", _STOP_TIMEOUT)

    def output_latency(self) -> float:
        stream = getattr(self._transport.output(), "_out_stream", None) if self._transport else None
        if stream is None:
            raise Unsupported("output latency: no device stream")
        return float(stream.get_output_latency())

    def frame_decoder(self) -> Callable[[str], Any]:
        """What ``SmallestTTSService._receive_messages`` does with a chunk frame
        (json.loads, base64 decode, ``TTSAudioRawFrame``), then ``np.frombuffer``."""
        import base64
        import json

        from pipecat.frames.frames import TTSAudioRawFrame

        def frame_to_pcm(raw: str) -> Any:
            msg = json.loads(raw)
            frame = TTSAudioRawFrame(audio=base64.b64decode(msg["data"]["audio"]), sample_rate=24000,
                                     num_channels=1, context_id="c")
            return np.frombuffer(frame.audio, dtype="<i2")

        return frame_to_pcm

    def _submit(self, coroutine: Any, *, wait: bool, timeout: float = _CALL_TIMEOUT) -> None:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        if wait:
            future.result(timeout)

    # ----- loop thread ---------------------------------------------------------------
    def _run(self, base_url: str, output: str) -> None:
        try:
            asyncio.run(self._main(base_url, output))
        except BaseException as exc:  # reported to open(), or logged after it
            self._failure = exc
            logger.warning("pipecat: loop ended with %r", exc)
        finally:
            self._ready.set()

    async def _main(self, base_url: str, output: str) -> None:
        from pipecat.pipeline.pipeline import Pipeline  # type: ignore[import-not-found]
        from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # type: ignore[import-not-found]
        from pipecat.services.smallest.tts import SmallestTTSService  # type: ignore[import-not-found]
        from pipecat.workers.runner import WorkerRunner  # type: ignore[import-not-found]

        self._loop = asyncio.get_running_loop()
        tts = SmallestTTSService(api_key="sk_benchmark", base_url=base_url, sample_rate=self._rate,
                                 stop_frame_timeout_s=STOP_FRAME_TIMEOUT)
        tts.add_event_handler("on_tts_request", self._on_tts_request)
        processors: List[Any] = [tts]
        if output == "device":
            from pipecat.transports.local.audio import (  # type: ignore[import-not-found]
                LocalAudioTransport, LocalAudioTransportParams)

            self._transport = LocalAudioTransport(LocalAudioTransportParams(
                audio_out_enabled=True, audio_out_sample_rate=self._rate))
            processors.append(self._transport.output())
        processors.append(_make_tap(self._on_frame))
        self._worker = PipelineWorker(Pipeline(processors), params=PipelineParams(audio_out_sample_rate=self._rate),
                                      enable_rtvi=False, cancel_on_idle_timeout=False, idle_timeout_secs=None)
        self._worker.add_event_handler("on_pipeline_started", self._on_started)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(self._worker)
        try:
            await runner.run()
        finally:
            if self._transport is not None:
                self._transport._pyaudio.terminate()  # LocalAudioTransport never does

    async def _on_started(self, worker: Any, frame: Any) -> None:
        self._ready.set()

    async def _on_tts_request(self, tts: Any, context_id: str, text: str) -> None:
        # An async event: pipecat runs it as a task created before the request is
        # sent and before the context's TTSStartedFrame is queued, so it binds first.
        with self._lock:
            waiting = self._unbound.get(text)
            if waiting:
                self._contexts[context_id] = waiting.popleft()
                if not waiting:
                    del self._unbound[text]

    def _on_frame(self, frame: Any) -> None:
        """The tap, on the loop thread: route one downstream frame to its utterance."""
        kind = type(frame).__name__
        if kind == "TTSAudioRawFrame":
            # After the output transport, re-chunked frames carry no context id: the
            # current context's (contexts play one after another).
            handle = self._contexts.get(frame.context_id) if frame.context_id else self._current
            pcm = np.frombuffer(frame.audio, dtype="<i2")
            if handle is not None:
                handle.feed(pcm)
            elif self._on_write is not None:  # audio of a context already cut: still written
                self._on_write(pcm)
        elif kind == "TTSStartedFrame":
            self._current = self._contexts.get(frame.context_id)
        elif kind == "TTSStoppedFrame":
            with self._lock:
                handle = self._contexts.pop(frame.context_id, None)
            if handle is not None:
                handle.finish()
        elif kind == "InterruptionFrame":
            with self._lock:
                victims = self._victims.popleft() if self._victims else []
                for context, handle in list(self._contexts.items()):
                    if handle in victims:
                        del self._contexts[context]
            for handle in victims:
                handle.finish(interrupted=True)


def _make_tap(on_frame: Callable[[Any], None]) -> Any:
    """A pass-through processor calling ``on_frame`` for each downstream frame."""
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # type: ignore[import-not-found]

    class Tap(FrameProcessor):  # type: ignore[misc]
        async def process_frame(self, frame: Any, direction: Any) -> None:
            await super().process_frame(frame, direction)
            if direction == FrameDirection.DOWNSTREAM:
                on_frame(frame)
            await self.push_frame(frame, direction)

    return Tap(name="bench-tap")
