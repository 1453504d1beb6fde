"""The handle of one piece of text on its way to the speaker."""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, List, Optional, Tuple, Union

from .events import WordEvent
from .player import Track
from .settings import Settings
from .timeline import TurnTimeline

if TYPE_CHECKING:
    from .speaker import Speaker

__all__ = ["Utterance"]

# States, in order of life; the last three are final. "speaking": its request is
# out and audio is arriving; "playing": all its audio has arrived and is being heard.
QUEUED, SPEAKING, PLAYING = "queued", "speaking", "playing"
DONE, INTERRUPTED, FAILED = "done", "interrupted", "failed"
FINAL = (DONE, INTERRUPTED, FAILED)


class PlayedTrack:
    """What a finished utterance keeps of its player :class:`~smallest_sync.player.Track`:
    the final counts, without the player's machinery (``Speaker.events`` keeps finished
    utterances alive, so they should be small)."""

    __slots__ = ("fed", "taken", "first_taken_at", "cut")

    def __init__(self, track: Track) -> None:
        self.fed = track.fed
        self.taken = track.taken
        self.first_taken_at = track.first_taken_at
        self.cut = track.cut

    def __repr__(self) -> str:
        return f"PlayedTrack(fed={self.fed}, taken={self.taken}, cut={self.cut})"


# What a finished utterance holds instead of its own Event (a Condition, a lock and a
# deque: ~1.2 kB) and of its Track, which every Player refuses (cut and finished), so
# a thread that reaches for it after the end feeds and marks nothing.
_FINISHED = threading.Event()
_FINISHED.set()
_NO_TRACK = Track("finished")
_NO_TRACK.cut = _NO_TRACK.finished = True


class Utterance:
    """A piece of text being spoken, returned by ``say()`` and ``speak()``.

    Thread-safe: any thread may ``wait()`` on it or ``cancel()`` it. State changes
    are made by the Speaker under its lock.

    Attributes:
        text: what was asked for.
        settings: the voice settings it is spoken with (fixed when it was queued).
        state: ``"queued"``, ``"speaking"`` (audio arriving), ``"playing"`` (all
            audio arrived), then one of ``"done"``, ``"interrupted"``, ``"failed"``.
        cached: True when its audio came from the Speaker's phrase cache, not the server.
    """

    def __init__(self, text: str, settings: Settings, serial: int, speaker: "Speaker", *,
                 streaming: bool = False, play: bool = True) -> None:
        self.text = text
        self.settings = settings
        self.serial = serial
        self._speaker = speaker
        self._track = Track(f"utterance-{serial}")  # the player's; _NO_TRACK once over
        #: Its audio as the player counts it: the Track while it lives, a PlayedTrack once over.
        self.track: Union[Track, PlayedTrack] = self._track
        self.state = QUEUED
        self.error: Optional[BaseException] = None
        self._finished = threading.Event()
        self.queued_at = time.monotonic()
        self.sent_at: Optional[float] = None
        self.first_chunk_at: Optional[float] = None
        self.heard_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        # Words heard so far, as (word, start, end, index): not the WordEvents, which point
        # back here (a cycle: a finished utterance would wait for a full GC to be freed).
        self._heard: List[Tuple[str, float, float, int]] = []
        self._open = streaming  # more text may still come (a token stream)
        self._streaming = streaming
        self._play = play  # False: synthesize() collects the audio instead of playing it
        self._collected: List[Any] = []  # synthesize(): decoded audio, reader thread only
        # Reader thread only, taken under the Speaker's lock; None once over (it holds request ids).
        self._timeline: Optional[TurnTimeline] = TurnTimeline(settings.sample_rate)
        self._words_placed = 0  # reader thread only
        self._pending_error: Optional[BaseException] = None  # raised once what arrived is heard
        self.cached = False
        # Phrase cache: the entry's key (None: not cached), whether it was looked up,
        # and the words as placed on the timeline, kept to store with the audio.
        self._cache_key: Optional[str] = None
        self._cache_tried = False
        self._placed_words: List[Tuple[str, float, float]] = []

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"<Utterance #{self.serial} {self.state} {text!r}>"

    @property
    def words(self) -> List[WordEvent]:
        """The words heard so far, in order (WordEvents equal to those ``on_word`` got)."""
        return [WordEvent(word, start, end, self, index) for word, start, end, index in self._heard]

    @property
    def done(self) -> bool:
        """True once it is over, whichever way (played, interrupted, cancelled, failed)."""
        return self._finished.is_set()

    @property
    def interrupted(self) -> bool:
        """True if ``interrupt()`` or ``cancel()`` cut it short (or before it began)."""
        return self.state == INTERRUPTED

    @property
    def time_to_first_audio(self) -> Optional[float]:
        """Seconds from queueing to its first sample handed to the output."""
        first = self.track.first_taken_at
        return None if first is None else first - self.queued_at

    @property
    def time_to_first_chunk(self) -> Optional[float]:
        """Seconds from sending the request to the first audio frame arriving."""
        if self.first_chunk_at is None or self.sent_at is None:
            return None
        return self.first_chunk_at - self.sent_at

    @property
    def duration(self) -> float:
        """Seconds of its audio handed to the output so far (all of it, once done)."""
        return self.track.taken / self.settings.sample_rate

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until it is over, or ``timeout`` seconds pass.

        Returns True when over (check :attr:`interrupted`), False on timeout.
        Raises the error that failed it (typed, with ``__cause__``). Even with no
        timeout the wait is bounded: a stalled server or audio device fails the
        utterance after the Speaker's ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        check_every = self._speaker.timeout / 4
        while not self._finished.is_set():
            remaining = check_every if deadline is None else min(check_every, deadline - time.monotonic())
            if remaining <= 0:
                return False
            if not self._finished.wait(remaining):
                self._speaker._check_stalled(self)
        if self.error is not None:
            raise self.error
        return True

    def cancel(self) -> None:
        """Drop this utterance only: silenced if playing, skipped if queued."""
        self._speaker._cancel(self)

    # Called by the Speaker, under its lock.
    def _end(self, state: str, error: Optional[BaseException] = None) -> bool:
        if self.state in FINAL:
            return False
        self.state = state
        self.error = error
        self.ended_at = time.monotonic()
        return True

    def _release(self) -> None:
        """Over (state final, its audio cut or heard): wake the waiters and let go of what
        only a live utterance needs. Idempotent."""
        if self._track is not _NO_TRACK:
            self.track = PlayedTrack(self._track)
            self._track, self._timeline = _NO_TRACK, None
        finished, self._finished = self._finished, _FINISHED
        finished.set()
