"""Frames from a connection's ``smallest-reader`` thread, routed to the request in flight."""
from __future__ import annotations

import logging
import time

from typing import TYPE_CHECKING

from ..errors import APIError, ProtocolError
from ..events import AudioEvent, ErrorEvent, WordEvent
from ..net.connection import Connection, ConnectionClosed, ReaderEvent
from ..net.protocol import AudioChunk, Complete, Pong, ServerError, UnknownFrame, WordTimestamp
from .request import Request, describe_closed
from .session import Session
from .timeline import TurnTimeline

if TYPE_CHECKING:
    from ..playback.player import Player

logger = logging.getLogger(__name__)

__all__ = ["FrameRouter"]


class FrameRouter:
    """Runs on each connection's reader thread: attributes frames, decodes audio,
    feeds the player and places word cues on the utterance's timeline.

    It takes the session's lock under the session's contract (to attribute a frame
    and mark progress), and decodes, feeds the player and announces without it.
    """

    def __init__(self, session: Session, player: "Player", *, timeout: float) -> None:
        self._session = session
        self._lock = session.lock
        self._player = player
        self._announcer = session.announcer
        self._timeout = timeout

    def on_frame(self, conn: Connection, event: ReaderEvent) -> None:
        """Route one frame from ``conn`` (runs on that connection's reader thread)."""
        session = self._session
        with self._lock:
            request = session.inflight
            ours = request is not None and request.conn is conn and not request.cancelled
            if isinstance(event, ConnectionClosed):
                if ours:
                    assert request is not None
                    request.closed = event
                    self._lock.notify_all()
                else:
                    logger.info("idle connection #%d ended: %s", conn.id, describe_closed(event))
                return
            if isinstance(event, (ProtocolError, UnknownFrame, Pong)):
                if not isinstance(event, Pong):
                    logger.warning("ignoring a server frame: %s", event)
                return
            if not ours or not request.owns(event):  # type: ignore[union-attr]
                if isinstance(event, ServerError):
                    logger.warning("server error outside any request: %s", event.message)
                    self._announcer.announce(ErrorEvent(APIError(event.message, code=event.code)))
                return
            assert request is not None
            request.progress_at = time.monotonic()
            if isinstance(event, Complete):
                self._on_complete(conn, request, event)
                return
            if isinstance(event, ServerError):
                request.error = APIError(event.message, code=event.code, request_id=event.request_id)
                self._lock.notify_all()
                return
            job, utterance = request.job, request.utterance
            timeline = job.timeline
            request.quiet_complete = False
            if isinstance(event, WordTimestamp):
                self._place_word(request, timeline, event)
                return
            assert isinstance(event, AudioChunk)
            request.chunks += 1
            if request.server_id is None:
                request.server_id = event.request_id
            if utterance.first_chunk_at is None:
                utterance.first_chunk_at = request.progress_at
            if request.chunks == 1:
                session.pool.poke()  # its audio is in (and may already be playing): a standby may follow
        # Decode and feed outside the lock: feeding may wait for the output to catch up.
        try:
            pcm = request.decoder.decode(event.audio)
        except ProtocolError as exc:
            with self._lock:
                request.error = exc
                self._lock.notify_all()
            return
        timeline.audio((request.client_id, event.request_id), len(pcm))
        if self._announcer.wants_audio and len(pcm):
            self._announcer.announce(AudioEvent(pcm, utterance))
        if not job.play or job.cache_key is not None:
            job.collected.append(pcm)  # synthesize()'s result, or the phrase to cache
        if job.play:
            self._player.feed(job.track, pcm, timeout=self._timeout)

    def _on_complete(self, conn: Connection, request: Request, event: Complete) -> None:
        """Reader thread, lock held: a ``complete`` for the request in flight."""
        if request.chunks == 0 and event.external_request_id is None and conn.keepalive_answered():
            # Before any audio, on a server that does not echo ids: most likely
            # the answer to a keepalive, not the end of this request.
            return
        conn.keepalives_answered()
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

    def _place_word(self, request: Request, timeline: TurnTimeline, event: WordTimestamp) -> None:
        """Reader thread, lock held: a word's cue, at its sample on the utterance's timeline."""
        job = request.job
        start, end = timeline.word((request.client_id, event.request_id), event.start, event.end)
        word = WordEvent(event.word, round(start, 4), round(end, 4), job.utterance, job.words_placed)
        job.words_placed += 1
        if job.cache_key is not None:
            job.placed_words.append((event.word, start, end))
        if job.play:
            self._player.mark_at(job.track, round(start * job.utterance.settings.sample_rate), "word", word)
