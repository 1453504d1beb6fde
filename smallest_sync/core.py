"""The Speaker's shared state, and how utterances end (heard, interrupted, failed).

:class:`SpeakerCore` is the base of the Speaker's parts: the sender loop
(``sender.py``), context turns (``context_turns.py``) and frame routing
(``routing.py``). They share one lock and the state declared here.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple

from .audio import AudioOutput
from .errors import AudioDeviceError, SpeakerClosedError
from .events import AudioEvent, Dispatcher, EndEvent, ErrorEvent, Event, StartEvent, WordEvent
from .player import Player, Track
from .request import Request
from .settings import Settings
from .sockets import SocketPool
from .utterance import DONE, FAILED, FINAL, INTERRUPTED, PLAYING, Utterance

if TYPE_CHECKING:
    from .cache import PhraseCache

logger = logging.getLogger(__name__)

__all__ = ["SpeakerCore"]


class SpeakerCore:
    """State shared by the Speaker's threads, and the ways an utterance ends.

    ``_lock`` guards everything that changes: the queue, the request in flight,
    the sockets (``_pool``), utterance states and the flags. It is never held
    while waiting on the network, feeding the player or calling user code.
    """

    _lock: threading.Condition
    _settings: Settings
    _queue: Deque[Utterance]  # not yet fully received
    _playing: List[Utterance]  # fully received, not yet heard to the end
    _parts: Dict[int, Deque[str]]  # text still to send, per utterance serial
    _inflight: Optional[Request]
    _pool: SocketPool
    _player: Player
    _output: AudioOutput
    _events: Dispatcher
    _output_error: Optional[AudioDeviceError]  # the output is lost for good
    _closing: bool
    _stop: threading.Event  # wakes the timer threads on close
    _sender: threading.Thread
    _stall_mark: Optional[Tuple[int, float]]  # (player samples taken, when): watchdog
    _cache: Optional["PhraseCache"]  # phrases spoken before, replayed without the server
    events: "queue.Queue[Event]"
    timeout: float
    _on_word: Optional[Callable[[WordEvent], object]]
    _on_start: Optional[Callable[[StartEvent], object]]
    _on_end: Optional[Callable[[EndEvent], object]]
    _on_error: Optional[Callable[[ErrorEvent], object]]
    _on_audio: Optional[Callable[[AudioEvent], object]]

    # ----- ending utterances ---------------------------------------------------------
    def _drop(self, victims: List[Utterance], state: str = INTERRUPTED, error: Optional[BaseException] = None) -> None:
        """End ``victims`` (interrupted, or failed with ``error``): out of the queue, the
        player and, if the server is still sending one of them, the socket. Lock held."""
        victims = [u for u in victims if u._end(state, error)]
        if not victims:
            self._lock.notify_all()
            return
        doomed = set(id(u) for u in victims)
        self._player.cut([u._track for u in victims])
        for utterance in victims:
            self._parts.pop(utterance.serial, None)
        self._queue = collections.deque(u for u in self._queue if id(u) not in doomed)
        self._playing = [u for u in self._playing if id(u) not in doomed]
        request = self._inflight
        if request is not None and id(request.utterance) in doomed:
            # The server is still sending it: end that socket so nothing stale can
            # arrive, and have a fresh one ready for what comes next.
            request.cancelled = True
            self._pool.replace_primary(request.conn)
            self._pool.poke()  # nothing waits for audio now
        self._lock.notify_all()

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
        if utterance.state in FINAL:
            # Dropped meanwhile (its waiters may not be released yet, so ``done`` can
            # still be False): it must not come back as playing.
            return
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
        if not self._player.finish(utterance._track):
            logger.debug("utterance #%d was cut before its end", utterance.serial)

    @contextlib.contextmanager
    def _in_flight(self, request: Request) -> Iterator[None]:
        """``request`` (made the one in flight by the caller, under the lock) stops
        being it when the block ends, however it ends."""
        try:
            yield
        finally:
            with self._lock:
                if self._inflight is request:
                    self._inflight = None
                    self._pool.poke()  # quiet now: a standby may be opened

    # ----- watchdog (run by waiters) -------------------------------------------------------
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

    # ----- the player thread ---------------------------------------------------------------
    def _on_heard(self, track: Track, kind: str, payload: Any, heard_at: float) -> None:
        """A cue of ``track`` is being heard (player thread)."""
        with self._lock:
            utterance = next((u for u in self._playing + list(self._queue) if u._track is track), None)
            if utterance is None:
                return
            if kind == "start":
                utterance.heard_at = heard_at
                self._pool.poke()  # its audio is playing: a standby may be opened
            elif kind == "word":
                if utterance.state in (DONE, INTERRUPTED, FAILED):
                    return
                utterance._heard.append((payload.word, payload.start, payload.end, payload.index))
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
