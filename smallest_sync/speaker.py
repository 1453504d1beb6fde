"""The public facade. The Speaker owns its parts and wires them together: the
session (:mod:`smallest_sync.session`), the sockets (:mod:`smallest_sync.net`) and
the player (:mod:`smallest_sync.playback`); docs/design.md draws how they meet."""
from __future__ import annotations

import itertools
import logging
import os
import threading
from typing import Any, Callable, Iterable, Optional, Union

import numpy as np

from ._types import Pcm
from .errors import SmallestError, SynthesisTimeout
from .events import AudioEvent, DeviceEvent, EndEvent, ErrorEvent, StartEvent, WordEvent
from .net.connection import live_url
from .net.keepalive import Keepalive
from .net.sockets import SocketPool
from .playback import OutputSpec, make_output
from .playback.outputs import WavOutput
from .playback.player import Player
from .session.announce import Announcer
from .session.options import Options
from .session.router import FrameRouter
from .session.sender import Sender
from .session.session import Session
from .session.watchdog import Watchdog
from .settings import API_KEY_ENV, DEFAULT_BASE_URL, SERVICE_RATES, Settings, require_api_key, validate_text
from .text import split_text
from .utterance import Utterance

logger = logging.getLogger(__name__)

__all__ = ["Speaker", "DEFAULT_BASE_URL", "API_KEY_ENV"]

_JOIN_TIMEOUT, _speaker_serials = 5.0, itertools.count(1)


class Speaker:
    """Speaks text through the Waves live TTS WebSocket, from any thread.

    Args:
        api_key: the Smallest API key; None reads ``$SMALLEST_API_KEY``. It is sent
            only in the upgrade's Authorization header and never logged or shown.
        base_url: ``wss://api.smallest.ai``, or the emulator's ``ws://127.0.0.1:PORT``.
            Plain ``ws://`` is refused for non-loopback hosts unless ``allow_insecure``.
        voice, model, language, speed: voice settings (validated now; ``update()``
            changes them for the next request). ``voice=None`` = the model's default.
        sample_rate: 8000, 16000, 24000 or 44100, asked of the service. None: 24000
            unless the device takes another of these but not it. A device that
            refuses the rate plays it resampled.
        word_timestamps: ask for word timings. output_format: pcm, wav, ulaw or alaw.
        output: None (default device), a device index or name, ``"null"``
            (real-time, silent), ``"file.wav"``, a callable taking int16 arrays,
            or an :class:`~smallest_sync.audio.AudioOutput`. A callable or an
            output's ``write`` runs on ``smallest-audio`` with no lock held: it
            may call ``interrupt()``, ``say()`` or ``close()``.
        keepalive_interval: seconds of silence on the socket before a keepalive.
        keepalive: ``"text"`` (a whitespace request) or ``"ping"`` (``{"type":"ping"}``).
        timeout: seconds allowed to connect, and for the server (or the audio device)
            to make progress; then SynthesisTimeout (or AudioDeviceError).
        complete_backoff_ms: how long the server waits after the last audio before
            saying ``complete`` (0: ``speak()`` returns as soon as it is heard).
        standby: keep a second socket open, so the request after an ``interrupt()``
            (which drops the socket carrying stale audio) needs no new connection.
        stream_mode: how ``speak_stream``/``say_stream`` travel. ``"requests"``
            (default): each sentence is a request of its own — works with every
            server. ``"context"``: sentences are fragments of one ``context_id``,
            so the server can join them with continuous prosody
            (:mod:`smallest_sync.session.context` says how a turn ends).
        on_word, on_start, on_end, on_error: callbacks taking a WordEvent,
            StartEvent, EndEvent or ErrorEvent. They run one at a time on the
            ``smallest-events`` thread — never on the reader or audio threads, and
            with no library lock held, so a slow callback cannot stutter audio and
            any method of the Speaker may be called from one. ``on_word`` fires
            when the word is *heard*. The same events also go to :attr:`events`,
            a ``queue.Queue`` to poll.
        on_audio: gets an AudioEvent with each decoded chunk as it arrives. on_device:
            a DeviceEvent when the sound card is lost and when it is back.
        cache_dir: a directory for the phrase cache (created if missing), or None.
            Text spoken before with the same settings on the same server replays
            from disk, with the same word events (``Utterance.cached`` tells);
            token streams are not cached. See :mod:`smallest_sync.cache`.
        cache_max_bytes: the cache's size bound; least recently used phrases go first.

    Raises:
        ConfigurationError: a setting is invalid (nothing has been sent).
        AudioDeviceError: the output device cannot be opened.
    """

    def __init__(
        self, api_key: Optional[str] = None, *, base_url: str = DEFAULT_BASE_URL,
        voice: Optional[str] = None, model: str = "lightning_v3.1_pro", language: str = "en",
        speed: Optional[float] = None, sample_rate: Optional[int] = None, word_timestamps: bool = True,
        output_format: str = "pcm", output: OutputSpec = None,
        keepalive_interval: float = 30.0, keepalive: str = "text", timeout: float = 10.0,
        complete_backoff_ms: int = 0, stream_mode: str = "requests", standby: bool = True,
        allow_insecure: bool = False,
        on_word: Optional[Callable[[WordEvent], object]] = None,
        on_start: Optional[Callable[[StartEvent], object]] = None,
        on_end: Optional[Callable[[EndEvent], object]] = None,
        on_error: Optional[Callable[[ErrorEvent], object]] = None,
        on_audio: Optional[Callable[[AudioEvent], object]] = None,
        on_device: Optional[Callable[[DeviceEvent], object]] = None,
        cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None, cache_max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        settings = Settings(voice=voice, model=model, language=language, speed=speed,
                            sample_rate=SERVICE_RATES[0] if sample_rate is None else sample_rate,
                            word_timestamps=word_timestamps, output_format=output_format)
        self.base_url, url, key = base_url, live_url(base_url, allow_insecure=allow_insecure), require_api_key(api_key)
        options = Options(timeout=timeout, keepalive_interval=keepalive_interval, keepalive=keepalive,
                          complete_backoff_ms=complete_backoff_ms, stream_mode=stream_mode, standby=standby)
        self.timeout, self.keepalive_interval = options.timeout, options.keepalive_interval
        cache = None
        if cache_dir is not None:
            from .cache import PhraseCache  # zipfile and friends only for those who use it

            cache = PhraseCache(cache_dir, max_bytes=cache_max_bytes, server=base_url)
        self._output = make_output(output)
        if sample_rate is None:  # a service rate the output takes as it is (a device: asked of PortAudio)
            settings = settings.replace(sample_rate=self._output.choose_rate(SERVICE_RATES))
        self._announcer = Announcer(on_word=on_word, on_start=on_start, on_end=on_end, on_error=on_error,
                                    on_audio=on_audio, on_device=on_device)
        self.events = self._announcer.events  # every Start/Word/End/Error event (the latest 256), to poll
        self._session = session = Session(settings, self._announcer, cache_key=None if cache is None else cache.key)
        self._player = Player(self._output, settings.sample_rate, listener=session.on_heard,
                              on_failure=session.on_output_failure, on_device=session.on_device)
        self._stop = threading.Event()  # wakes the timer threads on close
        router = FrameRouter(session, self._player, timeout=options.timeout)
        self._pool = SocketPool(url, key, handler=router.on_frame, timeout=options.timeout, stop=self._stop,
                                standby=options.standby, quiet=session.awaits_no_audio)
        session.attach(self._player, self._pool)
        prefix = f"ss{next(_speaker_serials)}{os.urandom(4).hex()}"  # our request ids: unique per Speaker
        self._sender = Sender(session, self._pool, self._player, options, cache=cache, id_prefix=prefix,
                              stop=self._stop)
        self._keepalive = Keepalive(options.keepalive_interval, self._sender.keepalive_targets, session=prefix,
                                    stop=self._stop)
        self._watchdog = Watchdog(session, self._player, self._sender.thread, timeout=options.timeout,
                                  stop=self._stop)
        # All daemons: a script that forgets close() still exits; close() joins them.
        for thread in (self._announcer.dispatcher.thread, self._sender.thread, self._pool.thread,
                       self._keepalive.thread, self._watchdog.thread):
            thread.start()

    def __repr__(self) -> str:
        s = self._session.settings
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
        return self._session.settings

    def say(self, text: str) -> Utterance:
        """Queue ``text`` and return its :class:`Utterance` at once.

        Utterances play one after another in the order queued, with no gap. Text
        longer than the service's advised 250 characters is sent as several
        requests, split at sentence and clause boundaries, and heard as one.
        """
        return self._session.enqueue(validate_text(text), split_text(text)).utterance

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

    def say_stream(self, tokens: Iterable[str]) -> Utterance:
        """Speak text as it is produced (an LLM's tokens), without blocking.

        Tokens are gathered into sentences, each sent as soon as it is complete,
        as one turn: speech starts while later tokens are still coming, and word
        times run on one timeline. A ``smallest-stream`` thread reads ``tokens``;
        an exception from it fails the utterance (its ``__cause__``).
        """
        job = self._session.enqueue("", [], streaming=True)
        self._session.read_in_background(job, tokens)
        return job.utterance

    def speak_stream(self, tokens: Iterable[str]) -> Utterance:
        """Like :meth:`say_stream`, but reads ``tokens`` on the calling thread and
        returns once everything has been heard. An exception from ``tokens``
        silences the utterance and propagates."""
        job = self._session.enqueue("", [], streaming=True)
        try:
            self._session.read_tokens(job, tokens, reraise=True)
            job.utterance.wait()
        except BaseException:
            self._session.cancel(job.utterance)
            raise
        return job.utterance

    def synthesize(self, text: str, *, timeout: Optional[float] = None) -> Pcm:
        """The audio of ``text`` as int16 samples at ``sample_rate``, not played.

        Queued behind earlier text like ``say()`` (it does not wait for their
        playback). Raises the typed error that failed it; SynthesisTimeout if
        ``timeout`` passes first.
        """
        job = self._session.enqueue(validate_text(text), split_text(text), play=False)
        if not job.utterance.wait(timeout):
            self._session.cancel(job.utterance)
            raise SynthesisTimeout(f"synthesis took longer than {timeout} s")
        if job.utterance.interrupted:
            raise SmallestError("synthesis was interrupted")
        return np.concatenate(job.collected) if job.collected else np.zeros(0, np.int16)

    def save(self, text: str, path: str, *, timeout: Optional[float] = None) -> None:
        """Synthesize ``text`` into a mono 16-bit WAV file at ``path``.

        An unwritable ``path`` raises ConfigurationError before anything is sent; a
        failed synthesis leaves no file behind.
        """
        wav = WavOutput(path)
        wav.open(self._session.settings.sample_rate)
        try:
            wav.write(self.synthesize(text, timeout=timeout))
        except BaseException:
            wav.close()
            os.remove(path)
            raise
        wav.close()

    def pause(self) -> None:
        """Silence playback now; nothing is lost: :meth:`resume` carries on from where
        the sound stopped (a few milliseconds are heard again). No word event fires
        while paused."""
        self._player.pause()

    def resume(self) -> None:
        """Carry on playing from where :meth:`pause` stopped the sound."""
        self._player.resume()

    @property
    def paused(self) -> bool:
        return self._player.paused

    def interrupt(self) -> None:
        """Silence now and drop everything queued. Safe from any thread (callbacks and
        outputs included), returns quickly.

        After it returns no sample of the dropped utterances is handed to the output;
        what a sound card had already buffered is dropped on ``smallest-audio``.
        """
        self._session.interrupt()

    def update(self, **changes: Any) -> None:
        """Change voice, model, language or speed for the next request (no reconnect)."""
        self._session.update(**changes)

    def wait_idle(self, timeout: Optional[float] = None) -> bool:
        """Block until everything queued has been heard; False on timeout. Errors of
        utterances are not raised here (see ``Utterance.wait``)."""
        return self._session.wait_idle(timeout)

    def close(self) -> None:
        """Drop everything, close the sockets and join every thread. Idempotent. Safe
        from a callback or an output (it then does not wait for that thread)."""
        if not self._session.close():
            return
        sockets = self._pool.detach_all()  # a handshake in progress ends now
        self._stop.set()
        connectors = (self._sender.thread, self._pool.thread)
        for thread in (*connectors, self._keepalive.thread, self._watchdog.thread, *self._session.streams):
            if thread is not threading.current_thread():
                # A TCP connect cannot be aborted: it ends within ``timeout``.
                thread.join(self.timeout + _JOIN_TIMEOUT if thread in connectors else _JOIN_TIMEOUT)
                if thread.is_alive():
                    logger.error("%s did not stop within %.1f s", thread.name, _JOIN_TIMEOUT)
        for conn in sockets:
            conn.close()
        self._player.close()
        self._announcer.close()  # lets go of the caller's callbacks, here on the closing thread

    @property
    def closed(self) -> bool:
        return self._session.closing
