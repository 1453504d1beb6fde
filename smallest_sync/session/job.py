"""The Speaker's private record of one utterance at work.

The public :class:`~smallest_sync.utterance.Utterance` is a passive handle; what
the Speaker's threads need to get it spoken lives here instead. Fields are guarded
by the session's lock, except where a comment names the one thread that uses them.
"""
from __future__ import annotations

import collections
from typing import Any, Deque, List, Optional, Tuple

from ..playback.cues import Track
from ..utterance import Utterance
from .timeline import TurnTimeline

__all__ = ["Job"]


class Job:
    """One utterance's working state: text to send, its player track, its timeline."""

    __slots__ = ("utterance", "track", "parts", "open", "streaming", "play", "collected", "timeline",
                 "words_placed", "pending_error", "cache_key", "cache_tried", "placed_words")

    def __init__(self, utterance: Utterance, parts: List[str], *, streaming: bool, play: bool) -> None:
        self.utterance = utterance
        self.track = Track(f"utterance-{utterance.serial}", self, utterance.track)
        self.parts: Deque[str] = collections.deque(parts)  # text still to send
        self.open = streaming  # more text may still come (a token stream)
        self.streaming = streaming
        self.play = play  # False: synthesize() collects the audio instead of playing it
        self.collected: List[Any] = []  # decoded audio kept: synthesize()'s result, or the phrase to cache
        self.timeline = TurnTimeline(utterance.settings.sample_rate)  # reader thread
        self.words_placed = 0  # reader thread
        self.pending_error: Optional[BaseException] = None  # raised once what arrived is heard
        # Phrase cache: the entry's key (None: not cached), whether it was looked up,
        # and the words as placed on the timeline, kept to store with the audio.
        self.cache_key: Optional[str] = None
        self.cache_tried = False
        self.placed_words: List[Tuple[str, float, float]] = []

    @property
    def serial(self) -> int:
        return self.utterance.serial

    def __repr__(self) -> str:
        return f"Job({self.utterance!r})"
