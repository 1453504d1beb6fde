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
import time
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np
import websocket

from .context_turns import ContextTurns
from .errors import APIError, AuthenticationError, CertificateError, SmallestConnectionError, SmallestError, SynthesisTimeout
from .events import AudioEvent, ErrorEvent, WordEvent
from .protocol import build_request
from .request import Request, describe_closed, join_parts, pack_parts
from .sockets import BACKOFF_MAX
from .utterance import DONE, PLAYING, SPEAKING, Utterance

if TYPE_CHECKING:
    from .cache import CachedPhrase

logger = logging.getLogger(__name__)

__all__ = ["SenderLoop"]

_RESEND_ATTEMPTS = 2  # a request lost with its socket before any audio is sent again


class SenderLoop(ContextTurns):
    """What the ``smallest-sender`` thread runs."""

    _session: str  # prefix of our request ids, unique per Speaker
    _request_serials: Iterator[int]
    _stream_mode: str

    def _run_sender(self) -> None:
        while True:
            with self._lock:
                while not (self._closing or self._pool.wanted or self._head_ready()):
                    self._lock.wait(BACKOFF_MAX)
                if self._closing:
                    return
                if self._head_ready():
                    utterance: Optional[Utterance] = self._queue[0]
                else:  # nothing to say yet: the time to open sockets ahead of need
                    utterance = None
                    self._pool.wanted = False
            try:
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
        """Open the primary socket ahead of need (the sockets thread adds the standby);
        failures are only logged (the next request retries)."""
        try:
            self._pool.primary()
        except (AuthenticationError, CertificateError) as exc:  # final: tell on_error now
            self._publish(self._on_error, ErrorEvent(exc))
        except SmallestError as exc:
            logger.info("could not open a connection ahead of time: %s", exc)

    def _speak_next_part(self, utterance: Utterance) -> None:
        if utterance._cache_key is not None and not utterance._cache_tried:
            utterance._cache_tried = True
            assert self._cache is not None
            phrase = self._cache.get(utterance._cache_key)
            if phrase is not None:
                self._replay(utterance, phrase)
                return
        with self._lock:
            parts = self._parts.get(utterance.serial)
            if utterance.done or parts is None:
                return
            context = utterance._streaming and self._stream_mode == "context"
            if context:  # the whole turn is one request of many fragments
                request = Request(utterance, "", f"{self._session}-t{utterance.serial}")
            elif not parts:
                if not utterance._open:
                    self._all_sent(utterance)
                return
            else:
                taken = pack_parts(parts)
                text = join_parts(list(itertools.islice(parts, taken)))
                request = Request(utterance, text, f"{self._session}-{next(self._request_serials)}")
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
        if utterance._cache_key is not None:
            self._store(utterance)

    def _replay(self, utterance: Utterance, phrase: CachedPhrase) -> None:
        """Play (or return) a phrase from the cache as if it had just arrived: the
        same word cues and events, no request. Queue order is kept, since only the
        head of the queue gets here."""
        with self._lock:
            if utterance.done:
                return
            utterance.state, utterance.cached = SPEAKING, True
            utterance.first_chunk_at = time.monotonic()
        pcm = phrase.pcm
        pcm.flags.writeable = False
        if self._on_audio is not None and len(pcm):
            self._events.emit(self._on_audio, AudioEvent(pcm, utterance))
        if utterance._play:
            rate = utterance.settings.sample_rate
            for index, (word, start, end) in enumerate(phrase.words):
                event = WordEvent(word, start, end, utterance, index)
                self._player.mark_at(utterance._track, round(start * rate), "word", event)
            self._player.feed(utterance._track, pcm, timeout=self.timeout)
        else:
            utterance._collected.append(pcm)
        with self._lock:
            if not utterance.done:
                self._all_sent(utterance)

    def _store(self, utterance: Utterance) -> None:
        """Keep a phrase that arrived whole (without the lock: this writes a file)."""
        with self._lock:
            whole = utterance.state in (PLAYING, DONE) and utterance._pending_error is None
            pcm = list(utterance._collected)
            if utterance._play:
                utterance._collected = []  # only synthesize() hands its audio out
        if whole and pcm and self._cache is not None and utterance._cache_key is not None:
            self._cache.put(utterance._cache_key, np.concatenate(pcm), utterance.settings.sample_rate,
                            utterance._placed_words)

    def _send_and_await(self, request: Request) -> Optional[BaseException]:
        """Send ``request`` and wait until its audio has all arrived.

        Returns None on success (or when the request was abandoned), else the error
        that should fail the utterance. A socket lost before any audio of the
        request arrived is retried after a backoff.
        """
        utterance = request.utterance

        def abandoned() -> bool:
            return request.cancelled or utterance.done or self._closing

        for attempt in range(1 + _RESEND_ATTEMPTS):
            if attempt and self._stop.wait(self._pool.next_backoff()):
                return None
            try:
                conn = self._pool.primary()
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
