"""The public facade: ``Speaker.speak()``, ``say()``, ``interrupt()``, ``update()``, ``close()``.

How the parts meet (see DESIGN.md for the picture):

* Callers queue :class:`~smallest_sync.utterance.Utterance` objects and return
  (``say``) or wait on them (``speak``).
* The ``smallest-sender`` thread (``sender.py``) opens the primary socket when
  it needs one and sends one request at a time; streamed turns in context mode
  are ``context_turns.py``. ``smallest-sockets`` (``sockets.py``) keeps the
  standby socket open and closes retired ones, off the request's path.
* Each connection's ``smallest-reader`` thread routes frames (``routing.py``):
  it decodes audio and feeds the player.
* On a sound card, ``smallest-audio`` writes the player's audio block by block;
  the ``smallest-player`` thread reports when audio is heard; that ends
  utterances (``core.py``).
* ``smallest-keepalive`` keeps idle sockets open; ``smallest-events`` runs callbacks.

Interrupting cuts the player's tracks (no sample of them can be taken after
``interrupt()`` returns) and, if the server is still sending, aborts the socket
so nothing stale can even arrive; the standby socket takes its place at once.
"""
from __future__ import annotations

import collections
import itertools
import logging
import os
import queue
import threading
import time
from typing import Any, Callable, Iterable, List, Optional, Union

import numpy as np

from .audio import OutputSpec, WavOutput, make_output
from .connection import live_url
from .errors import AudioDeviceError, ConfigurationError, SmallestError, SpeakerClosedError, SynthesisTimeout
from ._types import Pcm
from .events import AudioEvent, Dispatcher, EndEvent, ErrorEvent, Event, StartEvent, WordEvent
from .keepalive import Keepalive, KeepaliveTarget
from .player import Player
from .routing import FrameRouter
from .sender import SenderLoop
from .settings import UPDATABLE, Settings, validate_text
from .sockets import SocketPool
from .text import SentenceAggregator, split_text
from .utterance import Utterance

logger = logging.getLogger(__name__)

__all__ = ["Speaker", "DEFAULT_BASE_URL", "API_KEY_ENV"]

DEFAULT_BASE_URL = "wss://api.smallest.ai"
API_KEY_ENV = "SMALLEST_API_KEY"
_JOIN_TIMEOUT = 5.0
_EVENTS_KEPT = 256  # Speaker.events keeps the latest this many when nobody reads it (a poll loop reads far faster)
_session_serials = itertools.count(1)


def resolve_api_key(api_key: Optional[str] = None) -> str:
    """``api_key``, else ``$SMALLEST_API_KEY``, stripped; "" when there is none."""
    return (api_key if api_key is not None else os.environ.get(API_KEY_ENV) or "").strip()


class Speaker(SenderLoop, FrameRouter):
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
        cache_dir: a directory for the phrase cache (created if missing), or None
            (no cache). ``say``/``speak``/``synthesize`` of text spoken before with
            the same settings on the same server replay it from disk: no request,
            no network, the same word events (``Utterance.cached`` tells). Keyed by
            the text and every setting that changes the audio; token streams are
            not cached. See :mod:`smallest_sync.cache`.
        cache_max_bytes: the cache's size bound; least recently used phrases go first.

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
        cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
        cache_max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._settings = Settings(
            voice=voice, model=model, language=language, speed=speed, sample_rate=sample_rate,
            word_timestamps=word_timestamps, output_format=output_format,
        )
        self.base_url = base_url
        self._url = live_url(base_url, allow_insecure=allow_insecure)
        key = resolve_api_key(api_key)
        if not key:
            raise ConfigurationError(
                f"no API key: pass api_key= or set {API_KEY_ENV} (get one at https://waves.smallest.ai); "
                "to work offline, run the bundled emulator (python -m smallest_sync.emulator)"
            )
        self._api_key = key
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
        #: the latest 256 when nobody reads it.
        self.events: "queue.Queue[Event]" = queue.Queue(maxsize=_EVENTS_KEPT)
        self._streams: List[threading.Thread] = []  # say_stream() token readers
        self._stall_mark = None
        self._session = f"ss{next(_session_serials)}{os.urandom(4).hex()}"  # not random: ~1 ms to import
        self._serials = itertools.count(1)
        self._request_serials = itertools.count(1)

        # The one lock of the Speaker's parts: see SpeakerCore for what it guards.
        self._lock = threading.Condition()
        self._queue = collections.deque()
        self._playing = []
        self._parts = {}
        self._inflight = None
        self._output_error = None
        self._closing = False
        self._stop = threading.Event()
        self._pool = SocketPool(self._url, self._api_key, handler=self._on_frame, timeout=self.timeout,
                                lock=self._lock, stop=self._stop, standby=standby, quiet=self._awaits_no_audio)

        self._cache = None
        if cache_dir is not None:
            from .cache import PhraseCache  # zipfile and friends only for those who use it

            self._cache = PhraseCache(cache_dir, max_bytes=cache_max_bytes)
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
        self._keepalive = Keepalive(self.keepalive_interval, self._keepalive_targets,
                                    session=self._session, stop=self._stop, lock=self._lock)
        # All daemons: a script that forgets close() still exits; close() joins them.
        self._sender.start()
        self._pool.start()
        self._keepalive.thread.start()

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
            if self._cache is not None and not streaming:
                utterance._cache_key = self._cache.key(text, utterance.settings, server=self.base_url)
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
        """Synthesize ``text`` into a mono 16-bit WAV file at ``path``.

        An unwritable ``path`` raises ConfigurationError before anything is sent; a
        failed synthesis leaves no file behind.
        """
        wav = WavOutput(path)
        wav.open(self._settings.sample_rate)
        try:
            wav.write(self.synthesize(text, timeout=timeout))
        except BaseException:
            wav.close()
            os.remove(path)
            raise
        wav.close()

    def pause(self) -> None:
        """Silence playback now; nothing is lost: :meth:`resume` carries on from where
        the sound stopped. A sound card's buffer is dropped and what it held unheard is
        queued again (repeating a few milliseconds), so no word event fires while paused."""
        self._player.pause()

    def resume(self) -> None:
        """Carry on playing from where :meth:`pause` stopped the sound."""
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
            sockets = self._pool.detach_all()  # a handshake in progress ends now
        self._stop.set()
        self._finish(victims)
        connectors = (self._sender, self._pool.thread)
        for thread in (*connectors, self._keepalive.thread, *self._streams):
            if thread is not threading.current_thread():
                # A TCP connect cannot be aborted: it ends within ``timeout``.
                thread.join(self.timeout + _JOIN_TIMEOUT if thread in connectors else _JOIN_TIMEOUT)
                if thread.is_alive():
                    logger.error("%s did not stop within %.1f s", thread.name, _JOIN_TIMEOUT)
        for conn in sockets:
            conn.close()
        self._player.close()
        self._events.close()
        # Let go of the caller's callbacks, and of all they hold (a Tk root, widgets,
        # a TkDelivery), here on the closing thread. A Speaker sits in reference
        # cycles, so otherwise they are freed by a later garbage-collection pass on
        # whichever thread happens to allocate: a Tk interpreter freed off its own
        # thread aborts the process ("Tcl_AsyncDelete: async handler deleted by the
        # wrong thread").
        self._on_word = self._on_start = self._on_end = self._on_error = self._on_audio = None

    @property
    def closed(self) -> bool:
        return self._closing

    def _awaits_no_audio(self) -> bool:
        """Lock held: no request is waiting for its audio to start playing (or, for
        synthesize(), to arrive): the sockets thread's cue to open a standby."""
        request = self._inflight
        if request is None or request.cancelled:
            return True
        utterance = request.utterance
        return request.chunks > 0 and (utterance.heard_at is not None or not utterance._play)

    def _keepalive_targets(self) -> List[KeepaliveTarget]:
        """Keepalive thread: the sockets to keep and how, leaving out one busy with a request."""
        with self._lock:
            request = self._inflight
            # A context turn waiting for more text may sit idle for long: keep it
            # alive, with a ping (a whitespace request could end up in the turn).
            waiting = request is not None and request.utterance._open and self._stream_mode == "context"
            busy = request is not None and not waiting
            style = "ping" if waiting else self._keepalive_style
            return [(conn, style if primary else self._keepalive_style, self._settings)
                    for conn, primary in self._pool.idle_sockets() if not (primary and busy)]

