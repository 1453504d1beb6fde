"""The ``smallest-sender`` thread: opens the primary socket when needed and sends one request at a time.

It connects (with bounded backoff), sends one request, waits for that request's
``complete``, and retries or fails it when the server stalls or the socket
drops. One request in flight means every frame can be attributed without
trusting the server to echo our ids (it is checked when it does), and the
service's one-request-per-concurrency-unit limit is respected. The next request
goes out as soon as the previous one's audio has *arrived*, while it still
plays, so there is no gap.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, List, Optional

import numpy as np
import websocket

from ..errors import APIError, AuthenticationError, CertificateError, SmallestConnectionError, SmallestError, SynthesisTimeout
from ..events import AudioEvent, ErrorEvent, WordEvent
from ..net.keepalive import KeepaliveTarget
from ..net.protocol import build_request
from ..net.sockets import BACKOFF_MAX, SocketPool
from ..utterance import DONE, FINAL, PLAYING, SPEAKING
from .context import ContextTurns
from .job import Job
from .options import Options
from .request import Request, describe_closed, join_parts, pack_parts
from .session import Session

if TYPE_CHECKING:
    from ..cache import CachedPhrase, PhraseCache
    from ..playback.player import Player

logger = logging.getLogger(__name__)

__all__ = ["Sender"]

_RESEND_ATTEMPTS = 2  # a request lost with its socket before any audio is sent again


class Sender:
    """The ``smallest-sender`` thread: sends what the session queued, one request at a time.

    It takes the session's lock under the session's contract: to pick the next
    text and to wait for the request in flight to move on.
    """

    def __init__(self, session: Session, pool: SocketPool, player: "Player", options: Options,
                 *, cache: Optional["PhraseCache"], id_prefix: str, stop: threading.Event) -> None:
        self._session, self._lock, self._pool, self._player = session, session.lock, pool, player
        self._stop = stop  # set by close(): ends a backoff at once
        self._announcer = session.announcer
        self._cache = cache
        self._options = options
        self.timeout = options.timeout
        self._id_prefix = id_prefix  # of our request ids, unique per Speaker
        self._request_serials = itertools.count(1)
        self._context = ContextTurns(session, pool, player, options)
        # Daemon: a script that forgets close() still exits; Speaker.close() joins it.
        self.thread = threading.Thread(target=self._run, name="smallest-sender", daemon=True)

    def _run(self) -> None:
        session = self._session
        while True:
            with self._lock:
                while not (session.closing or session.warm_wanted or self._head_ready()):
                    self._lock.wait(BACKOFF_MAX)
                if session.closing:
                    return
                if self._head_ready():
                    job: Optional[Job] = session.queue[0]
                else:  # nothing to say yet: the time to open sockets ahead of need
                    job = None
                    session.warm_wanted = False
            try:
                if job is None:
                    self._warm_up()
                else:
                    self._speak_next_part(job)
            except Exception as exc:  # a bug here must fail the utterance, not hang it
                logger.exception("sender failed")
                if job is not None:
                    error = exc if isinstance(exc, SmallestError) else SmallestError(f"internal error: {exc!r}")
                    error.__cause__ = exc if error is not exc else exc.__cause__
                    session.fail(job, error)

    def _head_ready(self) -> bool:
        """Lock held: the first queued utterance has text to send, or is complete."""
        queue = self._session.queue
        if not queue:
            return False
        head = queue[0]
        return bool(head.parts) or not head.open

    def _warm_up(self) -> None:
        """Open the primary socket ahead of need (the sockets thread adds the standby);
        failures are only logged (the next request retries)."""
        try:
            self._pool.primary()
        except (AuthenticationError, CertificateError) as exc:  # final: tell on_error now
            self._announcer.announce(ErrorEvent(exc))
        except SmallestError as exc:
            logger.info("could not open a connection ahead of time: %s", exc)

    def keepalive_targets(self) -> List[KeepaliveTarget]:
        """``smallest-keepalive``: the sockets to keep and how, leaving out one busy with a request."""
        session, style = self._session, self._options.keepalive
        with self._lock:
            request = session.inflight
            # A context turn waiting for more text may sit idle for long: keep it
            # alive, with a ping (a whitespace request could end up in the turn).
            waiting = request is not None and request.job.open and self._options.stream_mode == "context"
            busy = request is not None and not waiting
            settings = session.settings
        return [(conn, "ping" if primary and waiting else style, settings)
                for conn, primary in self._pool.idle_sockets() if not (primary and busy)]

    def _speak_next_part(self, job: Job) -> None:
        session = self._session
        if job.cache_key is not None and not job.cache_tried:
            job.cache_tried = True
            assert self._cache is not None
            phrase = self._cache.get(job.cache_key)
            if phrase is not None:
                self._replay(job, phrase)
                return
        with self._lock:
            parts = job.parts
            if job.utterance.state in FINAL:
                return
            context = job.streaming and self._options.stream_mode == "context"
            if context:  # the whole turn is one request of many fragments
                request = Request(job, "", f"{self._id_prefix}-t{job.serial}")
            elif not parts:
                if not job.open:
                    session.all_sent(job)
                return
            else:
                taken = pack_parts(parts)
                text = join_parts(list(itertools.islice(parts, taken)))
                request = Request(job, text, f"{self._id_prefix}-{next(self._request_serials)}")
            session.inflight = request
        if context:
            self._context.speak(request)
            return
        with session.in_flight(request):
            outcome = self._send_and_await(request)
        if request.cancelled:
            return
        if outcome is not None:
            session.fail_after_playback(job, outcome)
            return
        with self._lock:
            for _ in range(min(taken, len(parts))):
                parts.popleft()
            if parts or job.open or job.utterance.state in FINAL:
                return
            session.all_sent(job)
        if job.cache_key is not None:
            self._store(job)

    def _replay(self, job: Job, phrase: "CachedPhrase") -> None:
        """Play (or return) a phrase from the cache as if it had just arrived: the
        same word cues and events, no request. Queue order is kept, since only the
        head of the queue gets here."""
        utterance = job.utterance
        with self._lock:
            if utterance.state in FINAL:
                return
            utterance.state, utterance.cached = SPEAKING, True
            utterance.first_chunk_at = time.monotonic()
        pcm = phrase.pcm
        pcm.flags.writeable = False
        if self._announcer.wants_audio and len(pcm):
            self._announcer.announce(AudioEvent(pcm, utterance))
        if job.play:
            rate = utterance.settings.sample_rate
            for index, (word, start, end) in enumerate(phrase.words):
                event = WordEvent(word, start, end, utterance, index)
                self._player.mark_at(job.track, round(start * rate), "word", event)
            self._player.feed(job.track, pcm, timeout=self.timeout)
        else:
            job.collected.append(pcm)
        with self._lock:
            self._session.all_sent(job)

    def _store(self, job: Job) -> None:
        """Keep a phrase that arrived whole (without the lock: this writes a file)."""
        with self._lock:
            whole = job.utterance.state in (PLAYING, DONE) and job.pending_error is None
            pcm = list(job.collected)
            if job.play:
                job.collected = []  # only synthesize() hands its audio out
        if whole and pcm and self._cache is not None and job.cache_key is not None:
            self._cache.put(job.cache_key, np.concatenate(pcm), job.utterance.settings.sample_rate,
                            job.placed_words)

    def _send_and_await(self, request: Request) -> Optional[BaseException]:
        """Send ``request`` and wait until its audio has all arrived.

        Returns None on success (or when the request was abandoned), else the error
        that should fail the utterance. A socket lost before any audio of the
        request arrived is retried after a backoff.
        """
        utterance, session = request.utterance, self._session

        def abandoned() -> bool:
            return request.cancelled or utterance.state in FINAL or session.closing

        for attempt in range(1 + _RESEND_ATTEMPTS):
            if attempt and self._stop.wait(self._pool.next_backoff()):
                return None
            try:
                conn = self._pool.primary()
            except SmallestError as exc:
                return exc
            message = build_request(
                request.text, utterance.settings, request_id=request.client_id,
                complete_backoff_ms=self._options.complete_backoff_ms,
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
                    self._pool.retire(conn)
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
                        self._pool.retire(conn)  # the server may still be sending that audio
                    return request.error
                closed = request.closed
                lost_before_audio = request.chunks == 0
                if closed is None:
                    self._pool.retire(conn)  # a late answer must never reach a later request
            if closed is None:
                return SynthesisTimeout(f"the server sent nothing for {self.timeout:.1f} s")
            refused = isinstance(closed.cause, websocket.WebSocketPayloadException)  # e.g. oversized
            if refused or not lost_before_audio:
                what = "refused the server's data" if refused else "the connection was lost mid-utterance"
                error = SmallestConnectionError(f"{what} ({describe_closed(closed)})")
                error.__cause__ = closed.cause
                return error
            logger.info("connection lost before audio (%s); sending again", describe_closed(closed))
        return SmallestConnectionError("the connection kept dropping before any audio arrived")
