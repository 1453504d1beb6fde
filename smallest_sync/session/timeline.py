"""One timeline for the word timestamps of a turn made of several requests.

The service times each request's words from that request's own audio, so a
turn sent as several requests restarts near 0 each time. A change of request
(seen on a word *or* an audio frame) moves the turn's offset forward by the
previous request's length:

* its audio length, when audio of it arrived — exact, and what makes a word
  event fire when the word is actually heard;
* otherwise its largest word ``end`` — the seed integration's rule, for a
  request whose audio we never saw.

The two agree whenever a request's audio ends with its last word. PROTOCOL.md's
worked examples (no audio): words A 0.2–0.5 then B 0.1–0.4 start at 0.2 and 0.6.
"""
from __future__ import annotations

from typing import Hashable, Optional, Tuple

__all__ = ["TurnTimeline"]


class TurnTimeline:
    """Places words of successive requests on their turn's timeline.

    Not thread-safe: one per turn, used from the reader thread.
    """

    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self.offset = 0.0  # seconds before the current request began
        self._request: Optional[Hashable] = None
        self._largest_end = 0.0  # of the current request's words
        self._samples = 0  # of the current request's audio

    def _enter(self, request: Hashable) -> None:
        if request == self._request:
            return
        if self._request is not None:
            self.offset += self._samples / self._rate if self._samples else self._largest_end
        self._request, self._largest_end, self._samples = request, 0.0, 0

    def audio(self, request: Hashable, samples: int) -> None:
        """``samples`` more audio of ``request`` arrived."""
        self._enter(request)
        self._samples += samples

    def word(self, request: Hashable, start: float, end: float) -> Tuple[float, float]:
        """The turn-timeline ``(start, end)`` of a word timed on ``request``'s audio."""
        self._enter(request)
        self._largest_end = max(self._largest_end, end)
        return start + self.offset, end + self.offset
