"""Frames from a connection's ``smallest-reader`` thread, routed to the request in flight."""
from __future__ import annotations

import logging
import time

from .connection import Connection, ConnectionClosed, ReaderEvent
from .core import SpeakerCore
from .errors import APIError, ProtocolError
from .events import AudioEvent, ErrorEvent, WordEvent
from .protocol import AudioChunk, Complete, Pong, ServerError, UnknownFrame, WordTimestamp
from .request import Request, describe_closed
from .timeline import TurnTimeline

logger = logging.getLogger(__name__)

__all__ = ["FrameRouter"]


class FrameRouter(SpeakerCore):
    """Runs on each connection's reader thread: attributes frames, decodes audio,
    feeds the player and places word cues on the utterance's timeline."""

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
                    logger.info("idle connection #%d ended: %s", conn.id, describe_closed(event))
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
                self._on_complete(conn, request, event)
                return
            if isinstance(event, ServerError):
                request.error = APIError(event.message, code=event.code, request_id=event.request_id)
                self._lock.notify_all()
                return
            utterance = request.utterance
            timeline = utterance._timeline
            if timeline is None:  # over already (cannot be while its request is ours)
                return
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
                self._pool.poke()  # its audio is in (and may already be playing): a standby may follow
        # Decode and feed outside the lock: feeding may wait for the output to catch up.
        try:
            pcm = request.decoder.decode(event.audio)
        except ProtocolError as exc:
            with self._lock:
                request.error = exc
                self._lock.notify_all()
            return
        timeline.audio((request.client_id, event.request_id), len(pcm))
        if self._on_audio is not None and len(pcm):
            self._events.emit(self._on_audio, AudioEvent(pcm, utterance))
        if not utterance._play or utterance._cache_key is not None:
            utterance._collected.append(pcm)  # synthesize()'s result, or the phrase to cache
        if utterance._play:
            self._player.feed(utterance._track, pcm, timeout=self.timeout)

    def _on_complete(self, conn: Connection, request: Request, event: Complete) -> None:
        """Reader thread, lock held: a ``complete`` for the request in flight."""
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

    def _place_word(self, request: Request, timeline: TurnTimeline, event: WordTimestamp) -> None:
        """Reader thread, lock held: a word's cue, at its sample on the utterance's timeline."""
        utterance = request.utterance
        start, end = timeline.word((request.client_id, event.request_id), event.start, event.end)
        word = WordEvent(event.word, round(start, 4), round(end, 4), utterance, utterance._words_placed)
        utterance._words_placed += 1
        if utterance._cache_key is not None:
            utterance._placed_words.append((event.word, start, end))
        if utterance._play:
            self._player.mark_at(utterance._track, round(start * utterance.settings.sample_rate), "word", word)
