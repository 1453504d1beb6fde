"""The public facade: ``Speaker.speak()``, ``say()``, ``interrupt()``, ``update()``, ``close()``.

How the parts meet (see DESIGN.md for the picture):

* Callers queue :class:`~smallest_sync.utterance.Utterance` objects and return
  (``say``) or wait on them (``speak``).
* The ``smallest-sender`` thread owns the socket's life: it connects (with bounded
  backoff), sends one request at a time, waits for that request's ``complete``,
  and retries or fails it when the server stalls or the socket drops. One request
  in flight means every frame can be attributed without trusting the server to
  echo our ids (it is checked when it does), and the service's one-request-per-
  concurrency-unit limit is respected. The next request goes out as soon as the
  previous one's audio has *arrived*, while it still plays, so there is no gap.
* The connection's ``smallest-reader`` thread decodes audio and feeds the player.
* The ``smallest-player`` thread reports when audio is heard; that ends utterances.
* ``smallest-keepalive`` keeps an idle socket open; ``smallest-events`` runs callbacks.

Interrupting cuts the player's tracks (no sample of them can be taken after
``interrupt()`` returns) and, if the server is still sending, aborts the socket
so nothing stale can even arrive; a fresh socket is opened straight away.
"""
from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import queue
import random
import threading
import time
import wave
from typing import Any, Callable, Deque, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import websocket

from .audio import OutputSpec, make_output
from .connection import Connection, ConnectionClosed, ReaderEvent, live_url
from .errors import (
    APIError,
    AudioDeviceError,
    AuthenticationError,
    CertificateError,
    ConfigurationError,
    ProtocolError,
    SmallestConnectionError,
    SmallestError,
    SpeakerClosedError,
    SynthesisTimeout,
)
from ._types import Pcm
from .events import AudioEvent, Dispatcher, EndEvent, ErrorEvent, Event, StartEvent, WordEvent
from .player import Player, Track
from .protocol import AudioChunk, Complete, PcmDecoder, Pong, ServerError, UnknownFrame, WordTimestamp, build_keepalive, build_request
from .settings import UPDATABLE, Settings, validate_text
from .text import MAX_CHARS, SentenceAggregator, split_text
from .utterance import DONE, FAILED, INTERRUPTED, PLAYING, SPEAKING, Utterance

logger = logging.getLogger(__name__)

__all__ = ["Speaker", "DEFAULT_BASE_URL", "API_KEY_ENV"]

DEFAULT_BASE_URL = "wss://api.smallest.ai"
API_KEY_ENV = "SMALLEST_API_KEY"
_CONNECT_ATTEMPTS = 3  # per request; then the utterance fails
_RESEND_ATTEMPTS = 2  # a request lost with its socket before any audio is sent again
_BACKOFF_FIRST, _BACKOFF_MAX = 0.2, 5.0
_JOIN_TIMEOUT = 5.0
_CONTEXT_SETTLE = 0.5  # context mode without id echoes: quiet after a complete that ends a turn
_EVENTS_KEPT = 1000  # Speaker.events keeps the latest this many when nobody reads it
_session_serials = itertools.count(1)


class _Request:
    """One synthesis request in flight. Guarded by the Speaker's lock."""

    __slots__ = ("utterance", "text", "client_id", "server_id", "decoder", "conn", "progress_at",
                 "complete", "closed", "error", "cancelled", "chunks", "fragment_ids", "end_sent",
                 "quiet_complete")

    def __init__(self, utterance: Utterance, text: str, client_id: str) -> None:
        self.utterance = utterance
        self.text = text
        self.client_id = client_id
        self.server_id: Optional[str] = None
        self.decoder = PcmDecoder(utterance.settings.output_format)
        self.conn: Optional[Connection] = None
        self.progress_at = time.monotonic()
        self.complete = False
        self.closed: Optional[ConnectionClosed] = None
        self.error: Optional[BaseException] = None
        self.cancelled = False
        self.chunks = 0
        # Context mode: one turn, many fragments (each its own server request).
        self.fragment_ids: List[str] = []
        self.end_sent = False
        self.quiet_complete = False  # the turn's latest frame was a complete

    def owns(self, frame: Any) -> bool:
        """Whether a frame belongs to this request (ids checked when the server sent them)."""
        if frame.external_request_id is not None:
            return bool(frame.external_request_id == self.client_id or frame.external_request_id in self.fragment_ids)
        if self.fragment_ids:
            return True  # a turn's fragments each get a new server id
        if self.server_id is not None and frame.request_id is not None:
            return bool(frame.request_id == self.server_id)
        return True


class Speaker:
    """Speaks text through the Waves live TTS WebSocket, from any thread.

    Args:
        api_key: the Smallest API key; None reads ``$SMALLEST_API_KEY``. It is sent
            only in the upgrade's Authorization header and never logged or shown.
        base_url: ``wss://api.smallest.ai``, or the emulator's ``ws://127.0.0.1:PORT``.
            Plain ``ws://`` is refused for non-loopback hosts unless ``allow_insecure``.
        voice, model, language, speed: voice settings (validated now; ``update()``
            changes them for the next request). ``voice=None`` = the model's default.
        sample_rate: 8000, 16000, 24000 or 44100; the output plays at this rate.
        word_timestamps: ask the server for word timings.
        output_format: how audio travels: pcm (default), wav, ulaw or alaw.
        output: None (default device), a device index or name, ``"null"``
            (real-time, silent), ``"file.wav"``, a callable taking int16 arrays,
            or an :class:`~smallest_sync.audio.AudioOutput`.
        keepalive_interval: seconds of silence on the socket before a keepalive.
        keepalive: ``"text"`` (a whitespace request, what production integrations
            send) or ``"ping"`` (``{"type":"ping"}``).
        timeout: seconds allowed to connect, and for the server (or the audio
            device) to make progress; past it the utterance fails with
            SynthesisTimeout (or AudioDeviceError).
        complete_backoff_ms: sent with each request: how long the server waits
            after the last audio before saying ``complete``. 0 lets ``speak()``
            return as soon as the audio has played.
        standby: keep a second socket open and kept alive, so that after an
            ``interrupt()`` (which drops the socket still carrying stale audio) the
            next request goes out at once instead of waiting for a new connection.
        stream_mode: how ``speak_stream``/``say_stream`` travel. ``"requests"``
            (default): each sentence is a request of its own, one at a time —
            works with every server. ``"context"``: sentences are fragments of one
            ``context_id`` sent as they come with ``continue: true``, closed by
            ``{"text": "", "continue": false}``, so the server can join them with
            continuous prosody. Servers differ on how they say a context is done;
            the turn ends at a ``complete`` echoing the last fragment's id, or,
            without echoes, once a ``complete`` after the end is followed by
            0.5 s of quiet.
        on_word, on_start, on_end, on_error: callbacks taking a WordEvent,
            StartEvent, EndEvent or ErrorEvent. They run one at a time on the
            ``smallest-events`` thread — never on the reader or audio threads, so a
            slow callback cannot stutter audio. ``on_word`` fires when the word is
            *heard*: when the output takes its first sample, plus the output's latency.
            The same events also go to :attr:`events`, a ``queue.Queue`` to poll.
        on_audio: gets an AudioEvent with each decoded chunk as it arrives.

    Raises:
        ConfigurationError: a setting is invalid (nothing has been sent).
        AudioDeviceError: the output device cannot be opened.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        voice: Optional[str] = None,
        model: str = "lightning_v3.1_pro",
        language: str = "en",
        speed: Optional[float] = None,
        sample_rate: int = 24000,
        word_timestamps: bool = True,
        output_format: str = "pcm",
        output: OutputSpec = None,
        keepalive_interval: float = 30.0,
        keepalive: str = "text",
        timeout: float = 10.0,
        complete_backoff_ms: int = 0,
        stream_mode: str = "requests",
        standby: bool = True,
        allow_insecure: bool = False,
        on_word: Optional[Callable[[WordEvent], object]] = None,
        on_start: Optional[Callable[[StartEvent], object]] = None,
        on_end: Optional[Callable[[EndEvent], object]] = None,
        on_error: Optional[Callable[[ErrorEvent], object]] = None,
        on_audio: Optional[Callable[[AudioEvent], object]] = None,
    ) -> None:
        self._settings = Settings(
            voice=voice, model=model, language=language, speed=speed, sample_rate=sample_rate,
            word_timestamps=word_timestamps, output_format=output_format,
        )
        self.base_url = base_url
        self._url = live_url(base_url, allow_insecure=allow_insecure)
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if not key or not key.strip():
            raise ConfigurationError(
                f"no API key: pass api_key= or set {API_KEY_ENV} (get one at https://waves.smallest.ai); "
                "to work offline, run the bundled emulator (python -m smallest_sync.emulator)"
            )
        self._api_key = key.strip()
        for name, value in (("timeout", timeout), ("keepalive_interval", keepalive_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds; got {value!r}")
        if stream_mode not in ("requests", "context"):
            raise ConfigurationError(f"stream_mode must be 'requests' or 'context'; got {stream_mode!r}")
        self._stream_mode = stream_mode
        if keepalive not in ("text", "ping"):
            raise ConfigurationError(f"keepalive must be 'text' or 'ping'; got {keepalive!r}")
        if isinstance(complete_backoff_ms, bool) or not isinstance(complete_backoff_ms, int) or not 0 <= complete_backoff_ms <= 10000:
            raise ConfigurationError(f"complete_backoff_ms must be an int in 0..10000; got {complete_backoff_ms!r}")
        self.timeout = float(timeout)
        self.keepalive_interval = float(keepalive_interval)
        self._keepalive_style = keepalive
        self._complete_backoff_ms = complete_backoff_ms
        self._on_word, self._on_start, self._on_end, self._on_error = on_word, on_start, on_end, on_error
        self._on_audio = on_audio
        #: Every Start/Word/End/Error event, for programs that poll (GUI loops). Keeps
        #: the latest 1000 when nobody reads it.
        self.events: "queue.Queue[Event]" = queue.Queue(maxsize=_EVENTS_KEPT)
        self._streams: List[threading.Thread] = []  # say_stream() token readers
        self._stall_mark: Optional[Tuple[int, float]] = None  # (player samples taken, when): watchdog
        self._connecting: Optional[Connection] = None  # a connect in progress, for close() to abort
        self._backoff = _BACKOFF_FIRST  # next reconnect delay; reset by a successful connect
        self._keepalive_serials = itertools.count(1)
        self._session = f"ss{next(_session_serials)}{random.getrandbits(32):08x}"
        self._serials = itertools.count(1)
        self._request_serials = itertools.count(1)

        # Guards everything below that changes: the queue, the request in flight,
        # the connection, utterance states and the flags. Never held while
        # waiting on the network, feeding the player or calling user code.
        self._lock = threading.Condition()
        self._queue: Deque[Utterance] = collections.deque()  # not yet fully received
        self._playing: List[Utterance] = []  # fully received, not yet heard to the end
        self._parts: "dict[int, Deque[str]]" = {}  # text still to send, per utterance serial
        self._inflight: Optional[_Request] = None
        self._conn: Optional[Connection] = None
        self._retired: List[Connection] = []  # aborted sockets whose readers the sender joins
        self._standby = standby
        self._output_error: Optional[AudioDeviceError] = None  # the output is lost for good
        self._standby_conn: Optional[Connection] = None  # open, idle, swapped in on interrupt()
        # A refused key or an unverifiable certificate: final for this Speaker, so no
        # retry storm and no second attempt to hand the key to that server.
        self._fatal_error: Optional[SmallestError] = None
        self._want_connection = True  # open a socket ahead of the first request
        self._closing = False
        self._stop = threading.Event()  # wakes the timer threads on close

        self._output = make_output(output)
        self._events = Dispatcher(self._on_error)
        try:
            self._player = Player(
                self._output, sample_rate, listener=self._on_heard, on_failure=self._on_output_failure,
                stall_timeout=self.timeout,
            )
        except BaseException:
            self._events.close()
            raise
        self._sender = threading.Thread(target=self._run_sender, name="smallest-sender", daemon=True)
        self._keepalive = threading.Thread(target=self._run_keepalive, name="smallest-keepalive", daemon=True)
        # All daemons: a script that forgets close() still exits; close() joins them.
        self._sender.start()
        self._keepalive.start()

    # ----- public API --------------------------------------------------------
    def __repr__(self) -> str:
        s = self._settings
        return (f"Speaker(base_url={self.base_url!r}, voice={s.voice!r}, model={s.model!r}, "
                f"language={s.language!r}, sample_rate={s.sample_rate}, output={self._output!r})")

    def __enter__(self) -> "Speaker":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Leaving the block normally lets queued speech finish; an exception drops it."""
        try:
            if exc_type is None:
                self.wait_idle()
        finally:
            self.close()

    @property
    def settings(self) -> Settings:
        """The settings the next request will use."""
        return self._settings

    def say(self, text: str) -> Utterance:
        """Queue ``text`` and return its :class:`Utterance` at once.

        Utterances play one after another in the order queued, with no gap. Text
        longer than the service's advised 250 characters is sent as several
        requests, split at sentence and clause boundaries, and heard as one.
        """
        return self._enqueue(validate_text(text), split_text(text))

    def _enqueue(self, text: str, parts: List[str], *, streaming: bool = False, play: bool = True) -> Utterance:
        with self._lock:
            if self._closing:
                raise SpeakerClosedError("this Speaker is closed")
            if play and self._output_error is not None:
                raise AudioDeviceError(f"the audio output was lost earlier ({self._output_error}); "
                                       "make a new Speaker once it is back")
            utterance = Utterance(text, self._settings, next(self._serials), self, streaming=streaming, play=play)
            self._parts[utterance.serial] = collections.deque(parts)
            self._queue.append(utterance)
            self._lock.notify_all()
        return utterance

    def say_stream(self, tokens: Iterable[str]) -> Utterance:
        """Speak text as it is produced (an LLM's tokens), without blocking.

        Tokens are gathered into sentences (the first words early, for a fast
        start) and each is sent as soon as it is complete, as one turn: speech
        starts while later tokens are still coming, and word times run on one
        timeline. A ``smallest-stream`` thread reads ``tokens``; an exception from
        it fails the utterance (its ``__cause__``). Returns the Utterance at once.
        """
        utterance = self._enqueue("", [], streaming=True)
        thread = threading.Thread(target=self._read_tokens, args=(utterance, tokens),
                                  name=f"smallest-stream-{utterance.serial}", daemon=True)
        # Daemon: a token source that never ends must not keep the program alive.
        with self._lock:
            self._streams = [t for t in self._streams if t.is_alive()] + [thread]
        thread.start()
        return utterance

    def speak_stream(self, tokens: Iterable[str]) -> Utterance:
        """Like :meth:`say_stream`, but reads ``tokens`` on the calling thread and
        returns once everything has been heard. An exception from ``tokens``
        silences the utterance and propagates."""
        utterance = self._enqueue("", [], streaming=True)
        try:
            self._read_tokens(utterance, tokens, reraise=True)
            utterance.wait()
        except BaseException:
            self._cancel(utterance)
            raise
        return utterance

    def _read_tokens(self, utterance: Utterance, tokens: Iterable[str], reraise: bool = False) -> None:
        aggregator = SentenceAggregator()
        try:
            for token in tokens:
                if utterance.done or self._closing:
                    break
                self._add_parts(utterance, aggregator.feed(str(token)))
            self._add_parts(utterance, aggregator.flush(), last=True)
        except Exception as exc:
            if reraise:
                raise
            error = SmallestError(f"the text stream raised {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._fail(utterance, error)
        finally:
            close = getattr(tokens, "close", None)
            if utterance.done and callable(close):
                close()  # stop a generator we no longer read

    def _add_parts(self, utterance: Utterance, parts: List[str], last: bool = False) -> None:
        with self._lock:
            queued = self._parts.get(utterance.serial)
            if queued is None:
                return
            queued.extend(parts)
            utterance.text = " ".join(filter(None, [utterance.text, *parts]))
            if last:
                utterance._open = False
            self._lock.notify_all()

    def synthesize(self, text: str, *, timeout: Optional[float] = None) -> Pcm:
        """The audio of ``text`` as int16 samples at ``sample_rate``, not played.

        Queued behind earlier text like ``say()`` (it does not wait for their
        playback). Raises the typed error that failed it; SynthesisTimeout if
        ``timeout`` passes first.
        """
        utterance = self._enqueue(validate_text(text), split_text(text), play=False)
        if not utterance.wait(timeout):
            self._cancel(utterance)
            raise SynthesisTimeout(f"synthesis took longer than {timeout} s")
        if utterance.interrupted:
            raise SmallestError("synthesis was interrupted")
        return np.concatenate(utterance._collected) if utterance._collected else np.zeros(0, np.int16)

    def save(self, text: str, path: str, *, timeout: Optional[float] = None) -> None:
        """Synthesize ``text`` into a mono 16-bit WAV file at ``path``."""
        pcm = self.synthesize(text, timeout=timeout)
        with wave.open(path, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(self._settings.sample_rate)
            wav.writeframes(pcm.astype("<i2", copy=False).tobytes())

    def pause(self) -> None:
        """Hold playback where it is (nothing is dropped); :meth:`resume` carries on."""
        self._player.pause()

    def resume(self) -> None:
        """Carry on playing from the sample where :meth:`pause` stopped."""
        self._player.resume()

    @property
    def paused(self) -> bool:
        return self._player.paused

    def speak(self, text: str) -> Utterance:
        """Say ``text`` and block until it has been heard (or interrupted).

        Returns the finished Utterance (``.interrupted`` tells if it was cut).
        Raises the typed error that failed it. Ctrl-C (KeyboardInterrupt) while
        waiting silences the speaker at once and propagates.
        """
        utterance = self.say(text)
        try:
            utterance.wait()
        except KeyboardInterrupt:
            self.interrupt()
            raise
        return utterance

    def interrupt(self) -> None:
        """Silence now and drop everything queued. Safe from any thread, returns quickly.

        After it returns no sample of the dropped utterances is taken by the output;
        what the device had already buffered is flushed on the player's thread.
        """
        with self._lock:
            victims = list(self._queue) + self._playing
            self._drop(victims)
        self._finish(victims)

    def update(self, **changes: Any) -> None:
        """Change voice, model, language or speed for the next request (no reconnect)."""
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise ConfigurationError(f"update() takes {', '.join(UPDATABLE)}; not {', '.join(sorted(unknown))}")
        with self._lock:
            self._settings = self._settings.replace(**changes)

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until everything queued has been heard. False on timeout.

        Errors of individual utterances are not raised here (see ``Utterance.wait``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = list(self._queue) + self._playing
            if not pending:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                if not pending[-1].wait(remaining):
                    return False
            except SmallestError:
                pass

    def close(self) -> None:
        """Drop everything, close the socket and join every thread. Idempotent.

        Safe to call from a callback (it then does not wait for the callback's own thread).
        """
        with self._lock:
            if self._closing:
                return
            self._closing = True
            victims = list(self._queue) + self._playing
            self._drop(victims)
            conn, self._conn = self._conn, None
            standby, self._standby_conn = self._standby_conn, None
            retired, self._retired = self._retired, []
            if self._connecting is not None:
                self._connecting.abort()  # a handshake in progress ends now
        self._stop.set()
        self._finish(victims)
        for thread in (self._sender, self._keepalive, *self._streams):
            if thread is not threading.current_thread():
                # A TCP connect cannot be aborted: it ends within ``timeout``.
                thread.join(self.timeout + _JOIN_TIMEOUT if thread is self._sender else _JOIN_TIMEOUT)
                if thread.is_alive():
                    logger.error("%s did not stop within %.1f s", thread.name, _JOIN_TIMEOUT)
        for old in retired:
            old.close()
        for live in (conn, standby):
            if live is not None:
                live.close()
        self._player.close()
        self._events.close()

    @property
    def closed(self) -> bool:
        return self._closing

    # ----- dropping and finishing (lock held for _drop) ----------------------
    def _drop(self, victims: List[Utterance], state: str = INTERRUPTED, error: Optional[BaseException] = None) -> None:
        """End ``victims`` (interrupted, or failed with ``error``): out of the queue, the
        player and, if the server is still sending one of them, the socket. Lock held."""
        victims = [u for u in victims if u._end(state, error)]
        if not victims:
            self._lock.notify_all()
            return
        doomed = set(id(u) for u in victims)
        self._player.cut([u.track for u in victims])
        for utterance in victims:
            self._parts.pop(utterance.serial, None)
        self._queue = collections.deque(u for u in self._queue if id(u) not in doomed)
        self._playing = [u for u in self._playing if id(u) not in doomed]
        request = self._inflight
        if request is not None and id(request.utterance) in doomed:
            # The server is still sending it: end that socket so nothing stale can
            # arrive, and have a fresh one ready for what comes next.
            request.cancelled = True
            self._retire(request.conn)
            standby = self._standby_conn
            if self._conn is None and standby is not None and standby.alive:
                self._conn, self._standby_conn = standby, None  # ready now; a new standby follows
            self._want_connection = True
        self._lock.notify_all()

    def _retire(self, conn: Optional[Connection]) -> None:
        """Lock held: abort ``conn`` now; the sender joins its reader later."""
        if conn is None:
            return
        conn.abort()
        if conn not in self._retired:
            self._retired.append(conn)
        if self._conn is conn:
            self._conn = None

    def _finish(self, utterances: List[Utterance]) -> None:
        """Release waiters and report the end of ``utterances``. Lock NOT held."""
        for utterance in utterances:
            utterance._release()
            if not utterance._play:
                continue  # synthesize(): nothing was heard, so nothing to report
            if utterance.state == FAILED and utterance.error is not None:
                self._publish(self._on_error, ErrorEvent(utterance.error, utterance))
            self._publish(self._on_end, EndEvent(utterance))

    def _publish(self, callback: Optional[Callable[[Any], object]], event: Event) -> None:
        """Hand ``event`` to its callback (events thread) and to :attr:`events`. Never blocks."""
        self._events.emit(callback, event)
        try:
            self.events.put_nowait(event)
        except queue.Full:  # nobody reads it: keep the newest
            try:
                self.events.get_nowait()
                self.events.put_nowait(event)
            except (queue.Empty, queue.Full):
                pass

    def _fail(self, utterance: Utterance, error: BaseException) -> None:
        """End ``utterance`` with ``error``: its audio cut, its request abandoned. Lock NOT held."""
        with self._lock:
            if utterance.state in (DONE, INTERRUPTED, FAILED):
                return
            self._drop([utterance], FAILED, error)
        logger.info("utterance #%d failed: %s", utterance.serial, error)  # the error itself reaches wait() and on_error
        self._finish([utterance])

    def _cancel(self, utterance: Utterance) -> None:
        with self._lock:
            victims = [u for u in list(self._queue) + self._playing if u is utterance]
            self._drop(victims)
        self._finish(victims)

    def _check_stalled(self, utterance: Utterance) -> None:
        """Called by waiters now and then: fail ``utterance`` if nothing moves it on."""
        if not self._sender.is_alive() and not utterance.done:
            self._fail(utterance, SpeakerClosedError("the Speaker's sender thread has stopped"))
            return
        player = self._player
        if player.paused or not player.has_queued:
            self._stall_mark = None
            return
        # Audio is waiting for the output (this utterance's or one ahead of it):
        # the output must be taking some, whoever's it is.
        taken, now = player.taken_total, time.monotonic()
        seen = self._stall_mark
        if seen is None or seen[0] != taken:
            self._stall_mark = (taken, now)
        elif now - seen[1] > self.timeout:
            self._stall_mark = None
            if player.kind == "device":
                player.mark_broken()  # never touch that stream again: PortAudio may hang on it
            with self._lock:
                if player.kind == "device":
                    self._output_error = AudioDeviceError(f"the audio output took no samples for {self.timeout:.1f} s")
                victims = list(self._playing) + list(self._queue)
                self._drop(victims, FAILED, AudioDeviceError(
                    f"the audio output took no samples for {self.timeout:.1f} s"))
            self._finish(victims)

    # ----- the sender thread ---------------------------------------------------
    def _run_sender(self) -> None:
        while True:
            with self._lock:
                while not (self._closing or self._want_connection or self._head_ready()):
                    self._lock.wait(_BACKOFF_MAX)
                if self._closing:
                    return
                if self._head_ready():
                    utterance: Optional[Utterance] = self._queue[0]
                else:  # nothing to say yet: the time to open sockets ahead of need
                    utterance = None
                    self._want_connection = False
                retired, self._retired = self._retired, []
            try:
                for old in retired:
                    old.close()
                if utterance is None:
                    self._warm_up()
                else:
                    self._speak_next_part(utterance)
            except Exception as exc:  # a bug here must fail the utterance, not hang it
                logger.exception("sender failed")
                if utterance is not None:
                    error = exc if isinstance(exc, SmallestError) else SmallestError(f"internal error: {exc!r}")
                    error.__cause__ = exc if error is not exc else exc.__cause__
                    self._fail(utterance, error)

    def _head_ready(self) -> bool:
        """Lock held: the first queued utterance has text to send, or is complete."""
        if not self._queue:
            return False
        head = self._queue[0]
        return bool(self._parts.get(head.serial)) or not head._open

    def _warm_up(self) -> None:
        """Open a socket (and the standby) ahead of need; failures are only logged (the
        next request retries)."""
        try:
            self._connection()
            if self._standby:
                self._open_standby()
        except (AuthenticationError, CertificateError) as exc:  # final: tell on_error now
            self._publish(self._on_error, ErrorEvent(exc))
        except SmallestError as exc:
            logger.info("could not open a connection ahead of time: %s", exc)

    def _speak_next_part(self, utterance: Utterance) -> None:
        with self._lock:
            parts = self._parts.get(utterance.serial)
            if utterance.done or parts is None:
                return
            context = utterance._streaming and self._stream_mode == "context"
            if context:  # the whole turn is one request of many fragments
                request = _Request(utterance, "", f"{self._session}-t{utterance.serial}")
            elif not parts:
                if not utterance._open:
                    self._all_sent(utterance)
                return
            else:
                taken = _pack(parts)
                text = _join(list(itertools.islice(parts, taken)))
                request = _Request(utterance, text, f"{self._session}-{next(self._request_serials)}")
            self._inflight = request
        if context:
            self._speak_context(request)
            return
        with self._in_flight(request):
            outcome = self._send_and_await(request)
        if request.cancelled:
            return
        if outcome is not None:
            self._fail_after_playback(utterance, outcome)
            return
        with self._lock:
            parts = self._parts.get(utterance.serial)
            for _ in range(min(taken, len(parts) if parts else 0)):
                parts.popleft()  # type: ignore[union-attr]
            if parts or utterance._open or utterance.done:
                return
            self._all_sent(utterance)

    @contextlib.contextmanager
    def _in_flight(self, request: _Request) -> Iterator[None]:
        """``request`` stops being the one in flight when the block ends, however it ends."""
        try:
            yield
        finally:
            with self._lock:
                if self._inflight is request:
                    self._inflight = None

    def _fail_after_playback(self, utterance: Utterance, error: BaseException) -> None:
        """The server failed ``utterance``: what already arrived is still heard, then
        its waiters get ``error``. (An audio device failure cuts at once instead.)"""
        with self._lock:
            if utterance.done:
                return
            utterance._pending_error = error
            utterance._open = False
            self._all_sent(utterance)
        logger.info("utterance #%d failed: %s", utterance.serial, error)

    def _all_sent(self, utterance: Utterance) -> None:
        """Lock held: every part of ``utterance`` has arrived (or all that will); now it only plays."""
        self._parts.pop(utterance.serial, None)
        if utterance in self._queue:
            self._queue.remove(utterance)
        self._lock.notify_all()
        if not utterance._play:  # synthesize(): over once received
            error = utterance._pending_error
            if utterance._end(FAILED if error else DONE, error):
                utterance._release()
            return
        self._playing.append(utterance)
        utterance.state = PLAYING
        # The end cue, after all its audio, ends the utterance when heard.
        if not self._player.finish(utterance.track):
            logger.debug("utterance #%d was cut before its end", utterance.serial)

    def _speak_context(self, request: _Request) -> None:
        """Context mode: send a streamed turn's sentences as fragments of one
        ``context_id`` as they come, then its end, and wait until it is all heard."""
        utterance = request.utterance
        with self._in_flight(request):
            error = self._send_context(request)
        if error is not None:
            self._fail_after_playback(utterance, error)
            return
        with self._lock:
            if not (request.cancelled or utterance.done):
                self._all_sent(utterance)

    def _send_context(self, request: _Request) -> Optional[BaseException]:
        utterance = request.utterance
        try:
            conn = self._connection()
        except SmallestError as exc:
            return exc
        with self._lock:
            if request.cancelled or utterance.done or self._closing:
                return None
            request.conn, request.progress_at = conn, time.monotonic()
            utterance.state = SPEAKING
        context = {"context_id": request.client_id}
        while True:
            with self._lock:
                parts = self._parts.get(utterance.serial)
                while not (request.cancelled or utterance.done or self._closing or request.error
                           or request.closed or parts or not utterance._open):
                    self._lock.wait(_BACKOFF_MAX)
                if request.cancelled or utterance.done or self._closing:
                    return None
                if request.error is not None or request.closed is not None:
                    break
                pieces: List[str] = []
                while parts:
                    taken = _pack(parts)
                    pieces.append(_join([parts.popleft() for _ in range(taken)]))
                last = not utterance._open and not parts
                settings = utterance.settings
            try:
                for piece in pieces:
                    fragment_id = f"{request.client_id}-{len(request.fragment_ids) + 1}"
                    with self._lock:
                        request.fragment_ids.append(fragment_id)
                    conn.send(build_request(piece, settings, request_id=fragment_id,
                                            complete_backoff_ms=self._complete_backoff_ms,
                                            extra={**context, "continue": True}))
                    if utterance.sent_at is None:
                        utterance.sent_at = time.monotonic()
                if last:
                    end = build_request("", settings, extra={**context, "continue": False})
                    conn.send(end)
                    with self._lock:
                        request.end_sent = True
                        request.progress_at = time.monotonic()
                    break
            except SmallestConnectionError as exc:
                return exc
        with self._lock:
            settled = False
            while not (request.complete or request.error or request.closed or request.cancelled
                       or utterance.done or self._closing):
                now = time.monotonic()
                if self._player.paused:
                    request.progress_at = now
                quiet = now - request.progress_at
                # Quiet after a complete ends the turn; how long is scaled to how slowly
                # this server starts a request, so a slow next fragment is not mistaken.
                settle = max(_CONTEXT_SETTLE, 3 * (utterance.time_to_first_chunk or 0.0))
                if request.quiet_complete and quiet >= settle:
                    settled = True
                    break
                if quiet >= self.timeout:
                    self._retire(conn)
                    return SynthesisTimeout(f"the server sent nothing for {self.timeout:.1f} s")
                self._lock.wait((settle if request.quiet_complete else self.timeout) - quiet)
            if request.error is not None:
                if not isinstance(request.error, APIError):
                    self._retire(conn)
                return request.error
            if request.complete or request.cancelled or utterance.done or self._closing:
                return None  # the last fragment's echoed complete: an exact end
            if settled:
                self._retire(conn)  # a guessed end: nothing late may reach the next utterance
                return None
            if request.closed is not None:
                return SmallestConnectionError(
                    f"the connection was lost mid-turn ({_describe(request.closed)}); context mode "
                    "needs a socket that stays open for the whole turn")
        return None

    def _send_and_await(self, request: _Request) -> Optional[BaseException]:
        """Send ``request`` and wait until its audio has all arrived.

        Returns None on success (or when the request was abandoned), else the error
        that should fail the utterance. A socket lost before any audio of the
        request arrived is retried after a backoff.
        """
        utterance = request.utterance

        def abandoned() -> bool:
            return request.cancelled or utterance.done or self._closing

        for attempt in range(1 + _RESEND_ATTEMPTS):
            if attempt and self._stop.wait(self._next_backoff()):
                return None
            try:
                conn = self._connection()
            except SmallestError as exc:
                return exc
            message = build_request(
                request.text, utterance.settings, request_id=request.client_id,
                complete_backoff_ms=self._complete_backoff_ms,
            )
            with self._lock:
                if abandoned():
                    return None
                request.conn, request.closed, request.progress_at = conn, None, time.monotonic()
                utterance.state = SPEAKING
            try:
                conn.send(message)
            except SmallestConnectionError as exc:
                with self._lock:
                    self._retire(conn)
                if abandoned():
                    return None
                logger.info("send failed (%s); reconnecting", exc)
                continue
            if utterance.sent_at is None:
                utterance.sent_at = time.monotonic()
            with self._lock:
                while not (request.complete or request.error or request.closed or abandoned()):
                    if self._player.paused:  # a paused listener is not a stalled server
                        request.progress_at = time.monotonic()
                    stalled_for = time.monotonic() - request.progress_at
                    if stalled_for >= self.timeout:
                        break
                    self._lock.wait(self.timeout - stalled_for)
                if abandoned() or request.complete:
                    return None
                if request.error is not None:
                    if not isinstance(request.error, APIError):
                        self._retire(conn)  # the server may still be sending that audio
                    return request.error
                closed = request.closed
                lost_before_audio = request.chunks == 0
                if closed is None:
                    self._retire(conn)  # a late answer must never reach a later request
            if closed is None:
                return SynthesisTimeout(f"the server sent nothing for {self.timeout:.1f} s")
            refused = isinstance(closed.cause, websocket.WebSocketPayloadException)  # e.g. oversized
            if refused or not lost_before_audio:
                what = "refused the server's data" if refused else "the connection was lost mid-utterance"
                error = SmallestConnectionError(f"{what} ({_describe(closed)})")
                error.__cause__ = closed.cause
                return error
            logger.info("connection lost before audio (%s); sending again", _describe(closed))
        return SmallestConnectionError("the connection kept dropping before any audio arrived")

    def _open_standby(self) -> None:
        """Sender thread: make sure an idle second socket is open."""
        with self._lock:
            old = self._standby_conn
            if old is not None and old.alive or self._closing:
                return
            self._standby_conn = None
            conn = Connection(self._url, self._api_key, handler=self._on_frame, timeout=self.timeout)
            self._connecting = conn
        if old is not None:
            old.close()
        try:
            conn.open()
        except SmallestError as exc:
            logger.info("could not open a standby connection: %s", exc)
            return
        finally:
            with self._lock:
                self._connecting = None
        with self._lock:
            if not self._closing:
                self._standby_conn = conn
                return
        conn.close()

    def _next_backoff(self) -> float:
        """The next reconnect delay, with jitter; doubles up to a bound until a connect succeeds."""
        delay = self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
        return delay * random.uniform(0.5, 1.0)

    def _connection(self) -> Connection:
        """The open connection, opening one (with backoff) if needed. Sender thread only."""
        with self._lock:
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            self._conn = None
            if self._fatal_error is not None:
                raise _again(self._fatal_error)
            promoted = self._standby_conn if self._standby_conn is not None and self._standby_conn.alive else None
            if promoted is not None:
                self._conn, self._standby_conn = promoted, None
                self._want_connection = True  # and a new standby
        if conn is not None:
            conn.close()
        if promoted is not None:
            return promoted
        error: Optional[SmallestError] = None
        for attempt in range(_CONNECT_ATTEMPTS):
            if attempt and self._stop.wait(self._next_backoff()):
                break
            conn = Connection(self._url, self._api_key, handler=self._on_frame, timeout=self.timeout)
            with self._lock:
                if self._closing:
                    break
                self._connecting = conn
            try:
                conn.open()
            except (AuthenticationError, CertificateError) as exc:
                with self._lock:
                    self._fatal_error = exc
                raise
            except SmallestConnectionError as exc:
                logger.info("connect attempt %d failed: %s", attempt + 1, exc)
                error = exc
                continue
            finally:
                with self._lock:
                    self._connecting = None
            with self._lock:
                if not self._closing:
                    self._conn = conn
                    self._backoff = _BACKOFF_FIRST
                    return conn
            conn.close()
            break
        if self._closing:
            raise SpeakerClosedError("this Speaker is closed")
        assert error is not None
        raise error

    # ----- the reader thread -----------------------------------------------------
    def _on_frame(self, conn: Connection, event: ReaderEvent) -> None:
        """Route one frame from ``conn`` (runs on that connection's reader thread)."""
        with self._lock:
            request = self._inflight
            ours = request is not None and request.conn is conn and not request.cancelled
            if isinstance(event, ConnectionClosed):
                if ours:
                    assert request is not None
                    request.closed = event
                    self._lock.notify_all()
                else:
                    logger.info("idle connection #%d ended: %s", conn.id, _describe(event))
                return
            if isinstance(event, (ProtocolError, UnknownFrame, Pong)):
                if not isinstance(event, Pong):
                    logger.warning("ignoring a server frame: %s", event)
                return
            if not ours or not request.owns(event):  # type: ignore[union-attr]
                if isinstance(event, ServerError):
                    logger.warning("server error outside any request: %s", event.message)
                    self._publish(self._on_error, ErrorEvent(APIError(event.message, code=event.code)))
                return
            assert request is not None
            request.progress_at = time.monotonic()
            if isinstance(event, Complete):
                if request.chunks == 0 and event.external_request_id is None and conn.keepalives_unanswered:
                    # Before any audio, on a server that does not echo ids: most likely
                    # the answer to a keepalive, not the end of this request.
                    conn.keepalives_unanswered -= 1
                    return
                conn.keepalives_unanswered = 0
                if request.fragment_ids:  # context mode: the sender decides when the turn is over
                    request.quiet_complete = True
                    if request.end_sent and event.external_request_id == request.fragment_ids[-1]:
                        request.complete = True
                    self._lock.notify_all()
                    return
                if request.decoder.pending_bytes:
                    logger.warning("request ended with %d undecodable trailing bytes", request.decoder.pending_bytes)
                request.complete = True
                self._lock.notify_all()
                return
            if isinstance(event, ServerError):
                request.error = APIError(event.message, code=event.code, request_id=event.request_id)
                self._lock.notify_all()
                return
            utterance = request.utterance
            request.quiet_complete = False
            if isinstance(event, WordTimestamp):
                self._place_word(request, event)
                return
            assert isinstance(event, AudioChunk)
            request.chunks += 1
            if request.server_id is None:
                request.server_id = event.request_id
            if utterance.first_chunk_at is None:
                utterance.first_chunk_at = request.progress_at
        # Decode and feed outside the lock: feeding may wait for the output to catch up.
        try:
            pcm = request.decoder.decode(event.audio)
        except ProtocolError as exc:
            with self._lock:
                request.error = exc
                self._lock.notify_all()
            return
        pcm.flags.writeable = False  # shared by the player and on_audio: nobody may change it
        utterance._timeline.audio((request.client_id, event.request_id), len(pcm))
        if self._on_audio is not None and len(pcm):
            self._events.emit(self._on_audio, AudioEvent(pcm, utterance))
        if utterance._play:
            self._player.feed(utterance.track, pcm, timeout=self.timeout)
        else:
            utterance._collected.append(pcm)

    def _place_word(self, request: _Request, event: WordTimestamp) -> None:
        """Reader thread, lock held: a word's cue, at its sample on the utterance's timeline."""
        utterance = request.utterance
        start, end = utterance._timeline.word((request.client_id, event.request_id), event.start, event.end)
        word = WordEvent(event.word, round(start, 4), round(end, 4), utterance, utterance._words_placed)
        utterance._words_placed += 1
        if utterance._play:
            self._player.mark_at(utterance.track, round(start * utterance.settings.sample_rate), "word", word)

    # ----- the player thread --------------------------------------------------
    def _on_heard(self, track: Track, kind: str, payload: Any, heard_at: float) -> None:
        """A cue of ``track`` is being heard (player thread)."""
        with self._lock:
            utterance = next((u for u in self._playing + list(self._queue) if u.track is track), None)
            if utterance is None:
                return
            if kind == "start":
                utterance.heard_at = heard_at
            elif kind == "word":
                if utterance.state in (DONE, INTERRUPTED, FAILED):
                    return
                utterance.words.append(payload)
                self._publish(self._on_word, payload)  # under the lock: never after its EndEvent
                return
            elif kind == "end":
                error = utterance._pending_error
                if not utterance._end(FAILED if error else DONE, error):
                    return
                self._playing = [u for u in self._playing if u is not utterance]
                self._lock.notify_all()
        if kind == "start":
            self._publish(self._on_start, StartEvent(utterance))
        elif kind == "end":
            self._finish([utterance])

    def _on_output_failure(self, error: BaseException) -> None:
        """Player thread: the output failed. A lost device fails everything that would
        play, now and later (make a new Speaker once it is back); synthesize() still works."""
        failure = error if isinstance(error, AudioDeviceError) else AudioDeviceError(f"audio output failed: {error}")
        if failure is not error:
            failure.__cause__ = error
        with self._lock:
            lost = self._player.broken
            if lost:
                self._output_error = failure
            pending = list(self._playing) + (list(self._queue) if lost else list(self._queue)[:1])
            victims = [u for u in pending if u._play]
            self._drop(victims, FAILED, failure)
        self._finish(victims)

    # ----- the keepalive thread -------------------------------------------------
    def _run_keepalive(self) -> None:
        interval = self.keepalive_interval
        wait = interval
        while not self._stop.wait(wait):
            with self._lock:
                request = self._inflight
                # A context turn waiting for more text may sit idle for long: keep it
                # alive, with a ping (a whitespace request could end up in the turn).
                waiting = request is not None and request.utterance._open and self._stream_mode == "context"
                busy = request is not None and not waiting
                style = "ping" if waiting else self._keepalive_style
                settings = self._settings
                sockets = [(self._conn, busy), (self._standby_conn, False)]
            wait = interval
            for conn, conn_busy in sockets:
                if conn is None or not conn.alive or conn_busy:
                    continue
                quiet_for = time.monotonic() - conn.last_send
                if quiet_for < interval:
                    wait = min(wait, max(interval - quiet_for, 0.01))
                    continue
                self._send_keepalive(conn, settings, style)

    def _send_keepalive(self, conn: Connection, settings: Settings, style: str) -> None:
        try:
            ka_id = f"{self._session}-ka{next(self._keepalive_serials)}"
            if style == "text":
                with self._lock:
                    conn.keepalives_unanswered += 1  # some servers answer it with a complete
            conn.send(build_keepalive(settings, style, request_id=ka_id))
            logger.debug("keepalive sent on connection #%d", conn.id)
        except SmallestConnectionError as exc:
            logger.info("keepalive failed: %s", exc)


def _again(error: SmallestError) -> SmallestError:
    """A fresh copy of a remembered final error, so each raise has its own traceback."""
    copy = type(error)(str(error), status_code=getattr(error, "status_code", None))  # type: ignore[call-arg]
    copy.__cause__ = error.__cause__
    return copy


def _pack(parts: Deque[str]) -> int:
    """How many leading ``parts`` fit one request (at least one): fewer, longer
    requests keep prosody together and cost fewer round trips."""
    size, count = len(parts[0]), 1
    while count < len(parts) and size + 1 + len(parts[count]) <= MAX_CHARS:
        size += 1 + len(parts[count])
        count += 1
    return count


_NO_SPACE_AFTER = "。！？।॥"  # scripts that do not put a space between sentences


def _join(parts: List[str]) -> str:
    text = parts[0]
    for part in parts[1:]:
        text += part if text[-1:] in _NO_SPACE_AFTER else " " + part
    return text


def _describe(closed: ConnectionClosed) -> str:
    if closed.code is not None:
        return f"closed by the server with code {closed.code}{': ' + closed.reason if closed.reason else ''}"
    return f"socket error: {closed.cause}" if closed.cause else "socket ended"
