"""The Speaker's session: the queue of utterances, the request in flight, and how
utterances end (heard, interrupted, failed).

The session owns :attr:`Session.lock`. Its machinery — the sender
(:mod:`.sender`, :mod:`.context`) and the frame router (:mod:`.router`) — take it
too, under the contract written on :class:`Session`; nothing else does.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional

from ..errors import AudioDeviceError, ConfigurationError, SmallestError, SpeakerClosedError
from ..events import DeviceEvent, EndEvent, ErrorEvent, StartEvent, WordEvent
from ..settings import UPDATABLE, Settings
from ..text import SentenceAggregator
from ..utterance import DONE, FAILED, FINAL, INTERRUPTED, PLAYING, Utterance
from .announce import Announcer
from .job import Job
from .request import Request

if TYPE_CHECKING:
    from ..net.sockets import SocketPool
    from ..playback.cues import Track
    from ..playback.player import Player

logger = logging.getLogger(__name__)

__all__ = ["Session"]


class Session:
    """What the Speaker's threads share, and the ways an utterance ends.

    ``lock`` (a Condition) guards: :attr:`queue`, :attr:`playing`, :attr:`inflight`
    and every field of the request in flight, every :class:`~.job.Job`'s fields
    and its utterance's state, :attr:`settings`, :attr:`closing`,
    :attr:`output_error` and :attr:`warm_wanted`. Every change to them notifies it.

    The contract for the sender and the router, the only others that take it: they
    hold it for short steps, and never while connecting, sending, decoding, feeding
    the player or announcing; they wait on it for the request in flight to move on.
    With it held, the session calls the player and the socket pool (which take
    their own locks, never the other way round) and the announcer (which never
    blocks and runs no user code).

    Built in two steps: the player and the pool need the session's callbacks,
    and the session needs them (:meth:`attach`).
    """

    def __init__(self, settings: Settings, announcer: Announcer, *,
                 cache_key: Optional[Callable[[str, Settings], str]] = None) -> None:
        self.lock = threading.Condition()
        self.settings = settings  # for the next utterance queued
        self.queue: List[Job] = []  # not yet fully received, in order
        self.playing: List[Job] = []  # fully received, not yet heard to the end
        self.inflight: Optional[Request] = None
        self.closing = False
        self.output_error: Optional[AudioDeviceError] = None  # the output is lost for good (cannot reopen)
        self.warm_wanted = True  # the sender should open a primary socket ahead of need
        self.announcer = announcer
        self._cache_key = cache_key  # the phrase cache's key of a text, if there is a cache
        self._serial = 0
        self.streams: List[threading.Thread] = []  # say_stream() token readers
        self.player: "Player"
        self.pool: "SocketPool"

    def attach(self, player: "Player", pool: "SocketPool") -> None:
        self.player, self.pool = player, pool

    # ----- queueing (caller threads) ------------------------------------------------
    def enqueue(self, text: str, parts: List[str], *, streaming: bool = False, play: bool = True) -> Job:
        """Queue an utterance; its job (the Utterance is ``job.utterance``)."""
        with self.lock:
            if self.closing:
                raise SpeakerClosedError("this Speaker is closed")
            if play and self.output_error is not None:
                raise AudioDeviceError(f"the audio output was lost for good ({self.output_error})")
            self._serial += 1
            utterance = Utterance(text, self.settings, self._serial, cancel=self.cancel)
            job = Job(utterance, parts, streaming=streaming, play=play)
            if self._cache_key is not None and not streaming:
                job.cache_key = self._cache_key(text, utterance.settings)
            self.queue.append(job)
            self.lock.notify_all()
        return job

    def add_parts(self, job: Job, parts: List[str], last: bool = False) -> None:
        """More text of a streamed utterance (``last``: the stream has ended)."""
        with self.lock:
            if job.utterance.state in FINAL:
                return
            job.parts.extend(parts)
            job.utterance.text = " ".join(filter(None, [job.utterance.text, *parts]))
            if last:
                job.open = False
            self.lock.notify_all()

    def read_tokens(self, job: Job, tokens: Iterable[str], *, reraise: bool = False) -> None:
        """Read a token stream into ``job``, sentence by sentence (caller's thread, or a
        ``smallest-stream`` thread). An exception from ``tokens`` fails the utterance,
        or propagates with ``reraise``."""
        aggregator = SentenceAggregator()
        try:
            for token in tokens:
                if job.utterance.state in FINAL or self.closing:
                    break
                self.add_parts(job, aggregator.feed(str(token)))
            self.add_parts(job, aggregator.flush(), last=True)
        except Exception as exc:
            if reraise:
                raise
            error = SmallestError(f"the text stream raised {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self.fail(job, error)
        finally:
            close = getattr(tokens, "close", None)
            if job.utterance.state in FINAL and callable(close):
                close()  # stop a generator we no longer read

    def update(self, **changes: Any) -> None:
        """New voice settings for the utterances queued from now on."""
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise ConfigurationError(f"update() takes {', '.join(UPDATABLE)}; not {', '.join(sorted(unknown))}")
        with self.lock:
            self.settings = self.settings.replace(**changes)

    def read_in_background(self, job: Job, tokens: Iterable[str]) -> None:
        """:meth:`read_tokens` on a ``smallest-stream`` thread (joined by the Speaker's close())."""
        thread = threading.Thread(target=self.read_tokens, args=(job, tokens),
                                  name=f"smallest-stream-{job.serial}", daemon=True)
        # Daemon: a token source that never ends must not keep the program alive.
        with self.lock:
            self.streams = [t for t in self.streams if t.is_alive()] + [thread]
        thread.start()

    def wait_idle(self, timeout: Optional[float]) -> bool:
        """Block until everything queued has been heard; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.lock:
                pending = [job.utterance for job in self.queue + self.playing]
            if not pending:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                if not pending[-1].wait(remaining):
                    return False
            except SmallestError:
                pass

    # ----- ending utterances ----------------------------------------------------------
    def interrupt(self) -> None:
        """Drop everything queued and playing. Any thread."""
        with self.lock:
            victims = self._drop(self.queue + self.playing)
        self._finish(victims)

    def cancel(self, utterance: Utterance) -> None:
        """Drop one utterance (the ``cancel`` given to each Utterance). Any thread."""
        with self.lock:
            victims = self._drop([job for job in self.queue + self.playing if job.utterance is utterance])
        self._finish(victims)

    def fail(self, job: Job, error: BaseException) -> None:
        """End ``job`` with ``error`` now: its audio cut, its request abandoned."""
        with self.lock:
            victims = self._drop([job], FAILED, error)
        if victims:
            logger.info("utterance #%d failed: %s", job.serial, error)  # the error reaches wait() and on_error
        self._finish(victims)

    def fail_all(self, error: BaseException, *, playing_only: bool = False) -> None:
        """End every utterance with ``error`` (``playing_only``: those playing and the
        next queued one). An output's error spares synthesize(), which needs none."""
        with self.lock:
            output = isinstance(error, AudioDeviceError)
            if isinstance(error, AudioDeviceError) and self.player.broken:
                self.output_error = error
                playing_only = False
            queued = self.queue[:1] if playing_only else self.queue
            victims = self._drop([job for job in self.playing + queued if job.play or not output], FAILED, error)
        self._finish(victims)

    def close(self) -> bool:
        """Stop taking utterances and drop those pending. False if closed already."""
        with self.lock:
            if self.closing:
                return False
            self.closing = True
            victims = self._drop(self.queue + self.playing)
        self._finish(victims)
        return True

    def _drop(self, jobs: List[Job], state: str = INTERRUPTED,
              error: Optional[BaseException] = None) -> List[Job]:
        """Lock held: end ``jobs`` (interrupted, or failed with ``error``): out of the
        queue, the player and, if the server is still sending one, the socket. Returns
        those it ended, for :meth:`_finish` once the lock is released."""
        victims = [job for job in jobs if job.utterance._end(state, error)]
        self.lock.notify_all()
        if not victims:
            return victims
        self.player.cut([job.track for job in victims])
        self.queue = [job for job in self.queue if job not in victims]
        self.playing = [job for job in self.playing if job not in victims]
        request = self.inflight
        if request is not None and request.job in victims:
            # The server is still sending it: end that socket so nothing stale can
            # arrive, and have a fresh one ready for what comes next.
            request.cancelled = True
            if self.pool.replace_primary(request.conn):
                self.warm_wanted = True
            self.pool.poke()  # nothing waits for audio now
        return victims

    def _finish(self, jobs: List[Job]) -> None:
        """Lock NOT held: release the waiters of ``jobs`` and report their end."""
        for job in jobs:
            utterance = job.utterance
            utterance._release()
            if not job.play:
                continue  # synthesize(): nothing was heard, so nothing to report
            if utterance.state == FAILED and utterance.error is not None:
                self.announcer.announce(ErrorEvent(utterance.error, utterance))
            self.announcer.announce(EndEvent(utterance))

    def fail_after_playback(self, job: Job, error: BaseException) -> None:
        """The server failed ``job``: what already arrived is still heard, then its
        waiters get ``error``. (An audio device failure cuts at once instead.)"""
        with self.lock:
            if job.utterance.state in FINAL:
                return
            job.pending_error = error
            job.open = False
            self.all_sent(job)
        logger.info("utterance #%d failed: %s", job.serial, error)

    def all_sent(self, job: Job) -> None:
        """Lock held: every part of ``job`` has arrived (or all that will); now it only plays."""
        if job.utterance.state in FINAL:
            return  # dropped meanwhile: it must not come back as playing
        job.parts.clear()
        if job in self.queue:
            self.queue.remove(job)
        self.lock.notify_all()
        if not job.play:  # synthesize(): over once received
            error = job.pending_error
            if job.utterance._end(FAILED if error else DONE, error):
                job.utterance._release()
            return
        self.playing.append(job)
        job.utterance.state = PLAYING
        # The end cue, after all its audio, ends the utterance when heard.
        if not self.player.finish(job.track):
            logger.debug("utterance #%d was cut before its end", job.serial)

    @contextlib.contextmanager
    def in_flight(self, request: Request) -> Iterator[None]:
        """``request`` (made the one in flight by the caller, under the lock) stops
        being it when the block ends, however it ends."""
        try:
            yield
        finally:
            with self.lock:
                if self.inflight is request:
                    self.inflight = None
                    self.pool.poke()  # quiet now: a standby may be opened

    def awaits_no_audio(self) -> bool:
        """No request is waiting for its audio to start playing (or, for synthesize(),
        to arrive): the sockets thread's cue to open a standby."""
        with self.lock:
            request = self.inflight
            if request is None or request.cancelled:
                return True
            return request.chunks > 0 and (request.utterance.heard_at is not None or not request.job.play)

    # ----- the player's threads -------------------------------------------------------
    def on_heard(self, track: "Track", kind: str, payload: object, heard_at: float) -> None:
        """``smallest-player``: a cue of ``track`` is being heard."""
        job: Job = track.tag
        utterance = job.utterance
        with self.lock:
            if utterance.state in FINAL:
                return
            if kind == "start":
                utterance.heard_at = heard_at
                self.pool.poke()  # its audio is playing: a standby may be opened
            elif kind == "word":
                assert isinstance(payload, WordEvent)
                utterance._word_heard(payload)
                self.announcer.announce(payload)  # under the lock: never after its EndEvent
                return
            elif kind == "end":
                error = job.pending_error
                utterance._end(FAILED if error else DONE, error)
                self.playing = [j for j in self.playing if j is not job]
                self.lock.notify_all()
        if kind == "start":
            self.announcer.announce(StartEvent(utterance))
        elif kind == "end":
            self._finish([job])

    def on_device(self, state: str, error: Optional[BaseException]) -> None:
        """``smallest-audio``: the device was lost, or is back."""
        self.announcer.announce(DeviceEvent(state, error))

    def on_output_failure(self, error: BaseException) -> None:
        """``smallest-audio``: the output failed while it was being heard: what was
        playing fails (what is queued waits for the reopened device, up to the
        watchdog's timeout). An output lost for good fails everything that would play,
        now and later; synthesize() still works."""
        failure = error if isinstance(error, AudioDeviceError) else AudioDeviceError(f"audio output failed: {error}")
        if failure is not error:
            failure.__cause__ = error
        self.fail_all(failure, playing_only=True)

