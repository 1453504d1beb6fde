"""One emulated WebSocket connection: receive, queue, synthesise, stream.

Everything in this module runs on the emulator's event-loop thread (the
``smallest-emulator`` thread); espeak-ng runs as an asyncio subprocess. Per
connection there are three tasks:

* the receive loop (the websockets handler itself): records and answers every
  client message, validates requests and queues them;
* the worker: takes queued requests one at a time in arrival order, renders
  them and streams word/chunk frames paced against a monotonic schedule, then
  sends ``complete``;
* the idle watchdog: closes the socket after ``idle_timeout`` seconds with no
  client message while nothing is being synthesised.

Timing rules chosen where the service's documentation is silent:

* ``complete_backoff_ms`` is how long the server waits after a request's last
  chunk for another request before it sends ``complete``. In ``per_request``
  mode a request that is already queued (or arrives during the wait) ends the
  wait early: the ``complete`` goes out at once, before the next request's
  audio, so a burst of requests streams without dead time. In ``per_burst``
  mode the next request follows with no ``complete`` at all.
* The idle period starts at the later of the last client message and the end
  of the last synthesis; a queued, streaming, backing-off or stalled request,
  or a held fragment, pauses it. An idle timeout sends the error frame and
  closes with code 1000.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Deque, Dict, Optional, Union

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .catalog import WORD_TIMESTAMP_VOICES
from .config import EmulatorConfig, snapshot
from .fragments import FragmentBuffers, HeldText
from .messages import (
    PING_TYPES,
    ClientIds,
    FrameBuilder,
    RequestError,
    SynthesisParams,
    flag,
    new_request_id,
    new_session_id,
    parse_client_message,
    parse_ids,
    parse_params,
)
from .records import Received, Recorder, ServedRequest
from .stream import plan_stream
from .voice import render_async

__all__ = ["Session"]

logger = logging.getLogger(__name__)

_MALFORMED_FRAME = '{"status": "chunk", "data": {"audio": '


class _Outcome(enum.Enum):
    DONE = "done"  # every chunk sent
    CANCELLED = "cancelled"  # stopped by cancel_request
    FAILED = "failed"  # ended by an error frame
    CLOSED = "closed"  # the connection is gone


@dataclass(eq=False)
class _Job:
    """An accepted request waiting for, or going through, the worker."""

    request_id: str
    text: str
    request: Dict[str, Any]
    params: SynthesisParams
    ids: ClientIds
    config: EmulatorConfig
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    served: Optional[ServedRequest] = None

    @property
    def backoff(self) -> float:
        """Seconds between the last chunk and ``complete``."""
        ms = self.params.complete_backoff_ms
        return (self.config.default_complete_backoff_ms if ms is None else ms) / 1000.0


async def _wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True if it was set.

    Not ``asyncio.wait_for``: on Python <= 3.11 it can swallow a cancellation that
    lands as the event is set (CPython gh-86296), and a watchdog that survives its
    cancel() keeps the session, and Emulator.stop(), waiting forever.
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return bool(done)


class Session:
    """State and tasks of one accepted connection (event-loop thread only)."""

    def __init__(
        self,
        ws: ServerConnection,
        *,
        connection_id: int,
        idle_timeout: float,
        get_config: Callable[[], EmulatorConfig],
        recorder: Recorder,
    ) -> None:
        self.connection_id = connection_id
        self.session_id = new_session_id()
        self._ws = ws
        self._idle_timeout = idle_timeout
        self._get_config = get_config
        self._recorder = recorder
        self._frames = FrameBuilder(self.session_id)
        self._jobs: Deque[_Job] = deque()
        self._current: Optional[_Job] = None  # streaming or backing off
        self._burst_tail: Optional[_Job] = None  # per_burst: owes the burst's complete
        self._held = FragmentBuffers(self._release)
        self._last_request_of_context: Dict[str, str] = {}
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()  # the job queue changed or a cancel arrived
        self._activity = asyncio.Event()  # something the idle watchdog cares about
        self._last_activity = self._loop.time()

    # -- lifecycle -----------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes; cancels and awaits its tasks."""
        worker = self._loop.create_task(self._guard(self._work_loop, "worker"))
        watchdog = self._loop.create_task(self._guard(self._idle_loop, "idle watchdog"))
        try:
            await self._receive_loop()
        finally:
            worker.cancel()
            watchdog.cancel()
            await asyncio.gather(worker, watchdog, self._held.aclose(), return_exceptions=True)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        self._ws.transport.abort()

    async def _guard(self, body: Callable[[], Awaitable[None]], what: str) -> None:
        try:
            await body()
        except ConnectionClosed:
            logger.debug("connection %d: %s stopped, connection closed", self.connection_id, what)
        except Exception:
            logger.exception("connection %d: emulator %s failed", self.connection_id, what)
            await self._ws.close(1011, "emulator internal error")

    # -- receiving -----------------------------------------------------------

    async def _receive_loop(self) -> None:
        try:
            async for raw in self._ws:
                await self._on_message(raw)
        except ConnectionClosed:
            logger.debug("connection %d: closed abnormally", self.connection_id)

    async def _on_message(self, raw: Union[str, bytes]) -> None:
        message = parse_client_message(raw)
        with self._recorder.change():
            self._recorder.received.append(Received(self.connection_id, time.monotonic(), raw, message))
        self._touch()
        cfg = snapshot(self._get_config())
        if message is None:
            await self._send_error("Invalid message: expected a JSON object", "invalid_request", cfg)
            return
        kind = message.get("type")
        if isinstance(kind, str) and kind in PING_TYPES and "text" not in message:
            await self._send({"type": "pong"})
            return
        ids: Optional[ClientIds] = None
        try:
            ids = parse_ids(message)
            if flag(message, "cancel_request"):
                await self._cancel(ids, cfg)
                return
            text = message.get("text")
            if not isinstance(text, str):
                raise RequestError("Missing required field: text (string)")
            if not text.strip():
                await self._on_blank(message, ids, cfg)
                return
            params = parse_params(message, max_text_chars=cfg.max_text_chars)
        except RequestError as exc:
            await self._send_error(exc.message, exc.code, cfg, ids=ids)
            return
        self._on_text(message, text, params, ids, cfg)

    @staticmethod
    def _ends_context(message: Dict[str, Any]) -> bool:
        return message.get("continue") is False or flag(message, "flush") or flag(message, "context_close")

    async def _on_blank(self, message: Dict[str, Any], ids: ClientIds, cfg: EmulatorConfig) -> None:
        """Whitespace-only text: end/flush a context, or a keepalive. Never audio."""
        if self._ends_context(message):
            self._held.flush(ids.context_id)
            return
        if cfg.keepalive_reply == "complete":
            await self._send(self._frames.complete(request_id=new_request_id(), ids=ids,
                                                   echo=cfg.echo_external_ids, legacy=cfg.legacy_complete))

    def _on_text(self, message: Dict[str, Any], text: str, params: SynthesisParams,
                 ids: ClientIds, cfg: EmulatorConfig) -> None:
        key = ids.context_id
        holds = flag(message, "continue") or (key is not None and "continue" not in message)
        if cfg.continue_mode == "buffered" and (holds or key in self._held):
            delay_ms = params.max_buffer_delay_ms
            delay = cfg.default_max_buffer_delay_ms if delay_ms is None else delay_ms
            self._held.hold(key, message, text, params, ids, delay / 1000.0)
            self._poke()
            if self._ends_context(message) or not holds:
                self._held.flush(key)
            return
        self._enqueue(_Job(new_request_id(), text, dict(message), params, ids, cfg))

    # -- queueing ------------------------------------------------------------

    def _release(self, held: HeldText) -> None:
        """A context's held fragments become one request."""
        self._enqueue(_Job(new_request_id(), held.text, held.request, held.params, held.ids,
                           snapshot(self._get_config())))

    def _enqueue(self, job: _Job) -> None:
        self._jobs.append(job)
        self._wakeup.set()
        self._poke()

    # -- cancel --------------------------------------------------------------

    async def _cancel(self, ids: ClientIds, cfg: EmulatorConfig) -> None:
        """Stop a context: drop its queued and held text, stop its synthesis, reply complete."""
        context = ids.context_id
        if context is None:
            raise RequestError("cancel_request requires a context_id")
        dropped = [job for job in self._jobs if job.ids.context_id == context]
        if dropped:
            self._jobs = deque(job for job in self._jobs if job.ids.context_id != context)
        self._held.discard(context)
        self._poke()
        for active in (self._current, self._burst_tail):
            if active is not None and active.ids.context_id == context:
                active.cancel.set()  # the worker stops it and sends its complete
                self._wakeup.set()
                return
        if dropped:
            request_id, reply_ids = dropped[0].request_id, dropped[0].ids
        else:
            request_id = self._last_request_of_context.get(context) or new_request_id()
            reply_ids = ids
        await self._send(self._frames.complete(request_id=request_id, ids=reply_ids,
                                               echo=cfg.echo_external_ids, legacy=cfg.legacy_complete))
        if cfg.close_after_complete:
            await self._ws.close(1000, "complete")

    # -- the worker ----------------------------------------------------------

    async def _work_loop(self) -> None:
        while True:
            tail = self._burst_tail
            if tail is not None and (tail.cancel.is_set() or not self._jobs):
                if not await self._wait_for_job(tail):
                    self._burst_tail = None
                    if await self._complete(tail):
                        return
                    self._touch()
                    continue
            job = await self._next_job()
            self._burst_tail = None
            self._current = job
            self._poke()
            outcome = await self._stream(job)
            if outcome is _Outcome.CLOSED:
                return
            if outcome is _Outcome.DONE and job.config.complete_mode == "per_burst":
                self._burst_tail = job
            elif outcome is not _Outcome.FAILED:
                if outcome is _Outcome.DONE:
                    await self._wait_for_job(job)
                if await self._complete(job):
                    return
            self._current = None
            self._touch()

    async def _next_job(self) -> _Job:
        while not self._jobs:
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._jobs.popleft()

    async def _wait_for_job(self, tail: _Job) -> bool:
        """Wait up to ``tail``'s backoff for another request; False = none came (or cancelled)."""
        deadline = self._loop.time() + tail.backoff
        while not self._jobs:
            remaining = deadline - self._loop.time()
            if tail.cancel.is_set() or remaining <= 0:
                return False
            self._wakeup.clear()
            await _wait_event(self._wakeup, remaining)
        return not tail.cancel.is_set()

    async def _complete(self, job: _Job) -> bool:
        """Send ``complete`` for ``job``; True if the socket was then closed."""
        cfg = job.config
        await self._send(self._frames.complete(request_id=job.request_id, ids=job.ids,
                                               echo=cfg.echo_external_ids, legacy=cfg.legacy_complete))
        if job.served is not None:
            with self._recorder.change():
                job.served.completed = True
                job.served.cancelled = job.cancel.is_set()
        if cfg.close_after_complete:
            await self._ws.close(1000, "complete")
            return True
        return False

    async def _stream(self, job: _Job) -> _Outcome:
        """Render ``job`` and send its word and chunk frames on schedule."""
        cfg, params = job.config, job.params
        synthesis = await render_async(job.text, sample_rate=params.sample_rate, speed=params.speed,
                                       voice=params.voice_id, language=params.language,
                                       engine=cfg.engine)
        served = ServedRequest(
            connection_id=self.connection_id, request_id=job.request_id, session_id=self.session_id,
            external_request_id=job.ids.request_id, external_session_id=job.ids.session_id,
            context_id=job.ids.context_id, request=job.request, text=job.text,
            sample_rate=params.sample_rate, output_format=params.output_format,
            pcm=synthesis.pcm, words=list(synthesis.words),
        )  # fmt: skip
        job.served = served
        with self._recorder.change():
            self._recorder.served.append(served)
        if job.ids.context_id is not None:
            self._last_request_of_context[job.ids.context_id] = job.request_id
        with_words = params.word_timestamps and (
            params.voice_id in WORD_TIMESTAMP_VOICES or cfg.word_timestamps_any_voice)
        plan = plan_stream(synthesis.pcm, sample_rate=params.sample_rate,
                           output_format=params.output_format, chunk_ms=cfg.chunk_ms,
                           odd_chunks=cfg.odd_chunks,
                           word_start_samples=synthesis.word_start_samples if with_words else ())
        logger.debug("connection %d: %s renders %d samples in %d chunks", self.connection_id,
                     job.request_id, len(synthesis.pcm), len(plan))
        start = self._loop.time() + max(0.0, cfg.first_chunk_delay)
        fault_at = min(max(0, cfg.fault_after_chunks), len(plan)) if cfg.fault else -1
        for index in range(len(plan) + 1):
            if index == fault_at:
                outcome = await self._inject_fault(job, served, cfg)
                if outcome is not None:
                    return outcome
            if index == len(plan):
                break
            chunk = plan[index]
            pace = chunk.audio_start / cfg.realtime_factor if cfg.realtime_factor > 0 else 0.0
            if await self._sleep_until(start + pace, job.cancel):
                return _Outcome.CANCELLED
            for i in chunk.words:
                word, begin, end = synthesis.words[i]
                await self._send(self._frames.frame(
                    "word_timestamp", request_id=job.request_id, ids=job.ids, echo=cfg.echo_external_ids,
                    data={"id": i, "word": word, "start": begin, "end": end}))
            await self._send(self._frames.frame(
                "chunk", request_id=job.request_id, ids=job.ids, echo=cfg.echo_external_ids,
                data={"audio": base64.b64encode(chunk.payload).decode("ascii")}))
            with self._recorder.change():
                served.sent_samples = chunk.samples_sent
        return _Outcome.DONE

    async def _sleep_until(self, deadline: float, cancel: asyncio.Event) -> bool:
        """Sleep until ``deadline`` (loop clock); True if ``cancel`` was set."""
        if cancel.is_set():
            return True
        remaining = deadline - self._loop.time()
        if remaining <= 0:
            await asyncio.sleep(0)  # let the receive loop run between chunks
            return cancel.is_set()
        return await _wait_event(cancel, remaining)

    async def _inject_fault(self, job: _Job, served: ServedRequest, cfg: EmulatorConfig) -> Optional[_Outcome]:
        """Apply ``cfg.fault``; an outcome ends the request, ``None`` carries on."""
        fault = cfg.fault
        logger.info("connection %d: injecting fault %r into %s", self.connection_id, fault, job.request_id)
        with self._recorder.change():
            served.fault = fault
        if fault == "drop":
            self.abort()
            return _Outcome.CLOSED
        if fault == "close":
            await self._ws.close(1011, "emulated server error")
            return _Outcome.CLOSED
        if fault == "stall":
            await self._ws.wait_closed()
            return _Outcome.CLOSED
        if fault == "error":
            await self._send(self._frames.error(
                "Emulated synthesis failure", "internal", shape=cfg.error_shape,
                request_id=job.request_id, ids=job.ids, echo=cfg.echo_external_ids))
            return _Outcome.FAILED
        if fault == "malformed":
            await self._ws.send(_MALFORMED_FRAME)
            return None
        if fault == "unknown_status":
            await self._send(self._frames.frame(
                "mystery", request_id=job.request_id, ids=job.ids, echo=cfg.echo_external_ids,
                data={"detail": "a status this client has never seen"}))
            return None
        raise ValueError(f"unknown fault {fault!r}")

    # -- idle timeout --------------------------------------------------------

    def _busy(self) -> bool:
        return bool(self._current or self._jobs or self._burst_tail or self._held)

    def _touch(self) -> None:
        """Restart the idle period now."""
        self._last_activity = self._loop.time()
        self._activity.set()

    def _poke(self) -> None:
        """Make the watchdog re-check whether the connection is busy."""
        self._activity.set()

    async def _idle_loop(self) -> None:
        while True:
            self._activity.clear()
            if self._busy():
                await self._activity.wait()
                continue
            remaining = self._last_activity + self._idle_timeout - self._loop.time()
            if remaining <= 0:
                break
            await _wait_event(self._activity, remaining)
        cfg = snapshot(self._get_config())
        logger.info("connection %d: idle for %gs, closing", self.connection_id, self._idle_timeout)
        await self._send_error(f"Connection timed out after {self._idle_timeout:g} seconds of inactivity",
                               "timeout", cfg)
        await self._ws.close(1000, "idle timeout")

    # -- sending -------------------------------------------------------------

    async def _send(self, frame: Dict[str, Any]) -> None:
        await self._ws.send(json.dumps(frame, separators=(",", ":")))

    async def _send_error(self, message: str, code: str, cfg: EmulatorConfig,
                          ids: Optional[ClientIds] = None) -> None:
        logger.debug("connection %d: error frame: %s", self.connection_id, message)
        await self._send(self._frames.error(message, code, shape=cfg.error_shape, ids=ids,
                                            echo=cfg.echo_external_ids))
