"""The handle of one piece of text on its way to the speaker.

A passive handle, like :class:`concurrent.futures.Future`: it holds its own state,
error, timings and words, and its own event to wait on. The Speaker that made it
marks it (through the underscored methods below, under the Speaker's lock); the
handle never calls into the Speaker, except through the ``cancel`` function it
was given.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, List, Optional, Tuple

from ._types import AudioCounts
from .events import WordEvent
from .settings import Settings

__all__ = ["Utterance", "AudioCounts"]

# States, in order of life; the last three are final. "speaking": its request is
# out and audio is arriving; "playing": all its audio has arrived and is being heard.
QUEUED, SPEAKING, PLAYING = "queued", "speaking", "playing"
DONE, INTERRUPTED, FAILED = "done", "interrupted", "failed"
FINAL = (DONE, INTERRUPTED, FAILED)


# What a finished utterance holds instead of its own Event (a Condition, a lock and a
# deque): finished utterances are kept by Speaker.events, so they should be small.
_FINISHED = threading.Event()
_FINISHED.set()


def _cancelled_already(utterance: "Utterance") -> None:
    """The cancel function of a finished utterance: there is nothing left to cancel."""


class Utterance:
    """A piece of text being spoken, returned by ``say()`` and ``speak()``.

    Thread-safe: any thread may ``wait()`` on it or ``cancel()`` it; neither waits
    for a lock of the Speaker.

    Attributes:
        text: what was asked for (for a token stream: what has been read so far).
        settings: the voice settings it is spoken with (fixed when it was queued).
        state: ``"queued"``, ``"speaking"`` (audio arriving), ``"playing"`` (all
            audio arrived), then one of ``"done"``, ``"interrupted"``, ``"failed"``.
        error: the exception that failed it, or None.
        cached: True when its audio came from the Speaker's phrase cache, not the server.
        track: its audio's counts (``fed``, ``taken``, ``first_taken_at``), kept
            current while it plays and final once it is over.
        queued_at, sent_at, first_chunk_at, heard_at, ended_at: ``time.monotonic()``
            when it was queued, its first request sent, its first audio received,
            its first sample heard, and when it ended (None until then).
    """

    def __init__(self, text: str, settings: Settings, serial: int, *,
                 cancel: Callable[["Utterance"], None], counts: Optional[AudioCounts] = None) -> None:
        self.text = text
        self.settings = settings
        self.serial = serial
        self._cancel = cancel
        self.track = counts if counts is not None else AudioCounts()
        self.state = QUEUED
        self.error: Optional[BaseException] = None
        self.cached = False
        self._finished = threading.Event()
        self.queued_at = time.monotonic()
        self.sent_at: Optional[float] = None
        self.first_chunk_at: Optional[float] = None
        self.heard_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        # Words heard so far, as (word, start, end, index): not the WordEvents, which point
        # back here (a cycle: a finished utterance would wait for a full GC to be freed).
        self._heard: List[Tuple[str, float, float, int]] = []

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"<Utterance #{self.serial} {self.state} {text!r}>"

    @property
    def words(self) -> List[WordEvent]:
        """The words heard so far, in order (WordEvents equal to those ``on_word`` got)."""
        return [WordEvent(word, start, end, self, index) for word, start, end, index in list(self._heard)]

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
        Raises the error that failed it (typed, with ``__cause__``). Returns within
        ``timeout`` whatever the Speaker's threads are doing. Even with no timeout
        the wait is bounded: the Speaker fails an utterance that a stalled server or
        audio device holds up for longer than its ``timeout``.
        """
        if not self._finished.wait(timeout):
            return False
        if self.error is not None:
            raise self.error
        return True

    def cancel(self) -> None:
        """Drop this utterance only: silenced if playing, skipped if queued. Any thread."""
        self._cancel(self)

    # ----- for the Speaker that made it (under its lock) ---------------------
    def _end(self, state: str, error: Optional[BaseException] = None) -> bool:
        """Make the state final; False if it already was."""
        if self.state in FINAL:
            return False
        self.state = state
        self.error = error
        self.ended_at = time.monotonic()
        return True

    def _word_heard(self, word: WordEvent) -> None:
        self._heard.append((word.word, word.start, word.end, word.index))

    def _release(self) -> None:
        """Over (state final, its audio cut or heard): let go of the Speaker and wake
        the waiters. Idempotent."""
        self._cancel = _cancelled_already
        finished, self._finished = self._finished, _FINISHED
        finished.set()
