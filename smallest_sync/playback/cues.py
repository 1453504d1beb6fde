"""Tracks, the cues placed on them, and the heap of cues waiting to be heard.

Everything here is guarded by the player's lock (``Player._cond``): these are the
player's records, kept apart so that player.py holds only how audio moves.
"""
from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import threading
import time
from typing import Any, Callable, Deque, List, Optional, Set, Tuple

from .._types import AudioCounts

logger = logging.getLogger(__name__)

__all__ = ["Track", "Cue", "DueCues", "Due", "Handed", "tell"]


class Track:
    """The player's view of one utterance.

    ``tag`` is the owner's: the player never looks at it.
    """

    __slots__ = ("label", "tag", "counts", "cut", "start_queued", "end_taken", "end_heard", "sealed",
                 "cues", "clock", "heard_from")

    def __init__(self, label: str = "", tag: Any = None, counts: Optional[AudioCounts] = None) -> None:
        self.label = label
        self.tag = tag
        self.counts = counts if counts is not None else AudioCounts()  # fed, taken, first taken at
        self.cues: Deque[Tuple[int, Cue]] = collections.deque()  # at sample positions, in order
        self.cut = False  # dropped: no more of it may be played
        self.start_queued = False  # its start cue is scheduled (or has fired)
        self.end_taken = False  # its end cue has left the queue: all its audio is taken
        self.end_heard = False  # its end cue has fired: nothing of it is left in the device
        self.sealed = False  # finish() was called: no more audio or cues are accepted
        # (when the last block taken starts being heard, samples of the track before it):
        # places a cue that arrives after its sample was taken.
        self.clock: Tuple[float, int] = (0.0, 0)
        self.heard_from = 0.0  # when its first sample is heard

    def __repr__(self) -> str:
        return f"Track({self.label!r}, {self.counts!r}, cut={self.cut})"


class Cue:
    """A start, end or word mark of a track."""

    __slots__ = ("kind", "payload", "position")

    def __init__(self, kind: str, payload: Any = None, position: Optional[int] = None) -> None:
        self.kind = kind
        self.payload = payload
        self.position = position  # the sample it marks (mark_at), or None: in the queue's order


#: (when heard, tie-break, track, cue)
Due = Tuple[float, int, Track, Cue]


class DueCues:
    """Cues whose time of being heard is known, earliest first (a heap)."""

    __slots__ = ("_heap", "_order")

    def __init__(self) -> None:
        self._heap: List[Due] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, when: float, track: Track, cue: Cue) -> None:
        heapq.heappush(self._heap, (when, next(self._order), track, cue))

    def cues(self) -> Set[Cue]:
        """The cues not fired yet."""
        return {due[3] for due in self._heap}

    def entries(self) -> List[Due]:
        return list(self._heap)

    def keep(self, wanted: Callable[[Due], bool]) -> None:
        """Drop the entries ``wanted`` refuses."""
        self._heap = [due for due in self._heap if wanted(due)]
        heapq.heapify(self._heap)

    def put_back(self, tracks: Set[Track], cues_back: Set[Cue]) -> None:
        """Audio of ``tracks`` went back to the queue (a take-back): their cues not heard
        yet leave the heap. Queued ones (``cues_back``) are back in the queue with their
        audio; marks go back to their track; a start cue is made again when sample 0
        is taken again."""
        def stays(due: Due) -> bool:
            track, cue = due[2], due[3]
            if track not in tracks:
                return True
            if cue in cues_back:
                return False
            if cue.position is None and cue.kind == "start" and not track.counts.taken:
                track.start_queued = False
                return False
            if cue.position is not None and cue.position >= track.counts.taken:
                track.cues.append((cue.position, cue))
                return False
            return True

        self.keep(stays)
        for track in tracks:
            if len(track.cues) > 1:
                track.cues = collections.deque(sorted(track.cues, key=lambda mark: mark[0]))

    def pop_due(self, now: float) -> List[Due]:
        """The entries heard by ``now``, taken off the heap in order."""
        heap, due = self._heap, []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap))
        return due

    def next_at(self) -> Optional[float]:
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()

    def fire(self, lock: threading.Condition, listener: Callable[[Track, str, Any, float], None],
             closing: Callable[[], bool], max_wait: float) -> None:
        """Hand each cue to ``listener`` once it is heard, until ``closing()``: the
        cue thread's loop. ``lock`` is the player's, which guards this heap; the
        listener runs without it."""
        while True:
            with lock:
                if closing():
                    return
                now = time.monotonic()
                due = self.pop_due(now)
                for _, _, track, cue in due:
                    if cue.kind == "end":
                        track.end_heard = True
                if not due:
                    at = self.next_at()
                    lock.wait(max_wait if at is None else min(at - now, max_wait))
                    continue
            for when, _, track, cue in due:
                tell(listener, when, track, cue)


def tell(listener: Callable[[Track, str, Any, float], None], when: float, track: Track, cue: Cue) -> None:
    """Hand a heard cue to the listener, unless its track was cut meanwhile. Any thread,
    no lock held; a bug in the listener is logged, never stops the caller's thread."""
    if not track.cut:
        try:
            listener(track, cue.kind, cue.payload, when)
        except Exception:
            logger.exception("player listener failed on %s cue", cue.kind)


#: (when heard, track, samples or a queued cue)
Piece = Tuple[float, Track, Any]


class Handed:
    """What went to an output that holds audio, until it is heard: pieces of audio and
    the queued cues taken with them, oldest first, each with when it is heard."""

    __slots__ = ("_pieces", "_rate")

    def __init__(self, rate: int) -> None:
        self._pieces: Deque[Piece] = collections.deque()
        self._rate = rate

    def add(self, piece: Piece) -> None:
        self._pieces.append(piece)

    def clear(self) -> None:
        self._pieces.clear()

    def forget_heard(self, now: float) -> None:
        """Drop what has been heard by ``now``."""
        pieces = self._pieces
        while pieces:
            when, _, data = pieces[0]
            if when + (0 if isinstance(data, Cue) else len(data) / self._rate) > now:
                break
            pieces.popleft()

    def unheard(self, now: float, pending: Set[Cue]) -> Tuple[List[Tuple[Track, Any]], Set[Cue], int]:
        """Empty the history; what of it is not heard by ``now`` (of tracks not cut):
        (the pieces, newest first; the cues among them; the samples). Only cues in
        ``pending`` (not fired) come back, and a track heard to its end never does.
        Each track's taken count goes back by what comes back."""
        back: List[Tuple[Track, Any]] = []
        cues_back: Set[Cue] = set()
        samples = 0
        pieces = self._pieces
        while pieces:
            when, track, data = pieces[-1]
            if isinstance(data, Cue):
                if when < now:
                    break
                pieces.pop()
                if not (track.cut or track.end_heard) and data in pending:
                    back.append((track, data))
                    cues_back.add(data)
                    if data.kind == "end":
                        track.end_taken = False
                continue
            heard = max(0, math.ceil((now - when) * self._rate))  # samples of it heard by now
            if heard >= len(data):
                break
            pieces.pop()
            if not (track.cut or track.end_heard):
                back.append((track, data[heard:]))
                track.counts.taken -= len(data) - heard
                samples += len(data) - heard
            if heard:
                break
        pieces.clear()  # the rest is heard (or being heard): nothing of it can come back
        return back, cues_back, samples
