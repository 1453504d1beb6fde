"""Plays queued PCM in order and knows, to the sample, what has been played.

Audio of each utterance is a :class:`Track`. The reader thread feeds decoded
samples into the player's queue; the output pulls them (a PortAudio callback or a
real-time clock) or is written as they come (files, functions). Cues — the start
and end of a track, later word marks — travel in the same queue, so they fire
exactly when the audio around them is *heard*: the moment the output took the
sample plus the output's reported latency.

Cutting a track (interrupt, cancel) removes its audio under the same lock that
feeding takes, so after :meth:`Player.cut` returns no later :meth:`Player.feed` of
that track can reach the output.

Threads: ``smallest-player`` (started here) dispatches cues at their time, runs
the clock of real-time null output and writes sinks; PortAudio's own thread runs
the device callback, which only copies samples.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Iterable, List, Optional, Tuple, Union

import numpy as np

from ._types import Pcm
from .audio import AudioOutput

logger = logging.getLogger(__name__)

__all__ = ["Player", "Track"]

#: (track, kind, payload, heard_at): runs on the player thread when a cue is heard.
Listener = Callable[["Track", str, Any, float], None]

_JOIN_TIMEOUT = 5.0
# A pulling device with nothing to play is stopped after this long, and restarted
# (about 0.5 ms) when audio comes: an idle running stream costs ~1 % of a core.
_SUSPEND_AFTER = 1.0
# The player thread wakes at least this often even with nothing due, so a lost
# notification can delay it but never stall it.
_MAX_IDLE_WAIT = 1.0


class Track:
    """The player's view of one utterance. Fields are guarded by the player's lock."""

    __slots__ = ("label", "cut", "fed", "taken", "first_taken_at", "ended")

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.cut = False  # dropped: no more of it may be played
        self.fed = 0  # samples queued so far
        self.taken = 0  # samples handed to the output so far
        self.first_taken_at: Optional[float] = None  # monotonic time of the first one
        self.ended = False  # its end cue has been taken

    def __repr__(self) -> str:
        return f"Track({self.label!r}, fed={self.fed}, taken={self.taken}, cut={self.cut})"


class _Cue:
    __slots__ = ("kind", "payload")

    def __init__(self, kind: str, payload: Any = None) -> None:
        self.kind = kind
        self.payload = payload


_Item = Tuple[Track, Union[Pcm, _Cue]]
_Due = Tuple[float, Track, _Cue]


class Player:
    """Plays tracks through one :class:`~smallest_sync.audio.AudioOutput`.

    Args:
        output: where samples go; opened here, so a bad device fails the constructor.
        sample_rate: of every sample fed.
        listener: called on the player thread for each cue when it is heard.
        on_failure: called on the player thread with an output error.
        max_buffered: samples the queue may hold before :meth:`feed` waits for the
            output to catch up (bounds memory when a server sends far ahead).
    """

    def __init__(
        self,
        output: AudioOutput,
        sample_rate: int,
        *,
        listener: Listener,
        on_failure: Callable[[BaseException], None],
        max_buffered: Optional[int] = None,
    ) -> None:
        self._output = output
        self._rate = sample_rate
        self._listener = listener
        self._on_failure = on_failure
        self._max_buffered = max_buffered or sample_rate * 120
        # Guards _items, _head_pos, _buffered, _due, _flush, _closing, _clock_next
        # and every Track's fields. Held only for short copies, never while
        # calling user code or the output.
        self._cond = threading.Condition()
        self._items: Deque[_Item] = collections.deque()
        self._head_pos = 0  # samples of the head item already taken
        self._buffered = 0  # samples queued and not yet taken
        self._due: Deque[_Due] = collections.deque()
        self._flush = False
        self._closing = False
        self._clock_next: Optional[float] = None
        self._last_taken = time.monotonic()  # when the output last took a sample
        # Guards starting, stopping and flushing the device stream, and _running.
        # Taken before _cond, never inside it: PortAudio's callback takes _cond,
        # and starting a stream may wait for that callback.
        self._stream_lock = threading.Lock()
        self._running = output.kind == "device"
        output.open(sample_rate)
        self._thread = threading.Thread(target=self._run, name="smallest-player", daemon=True)
        # Daemon: a script that forgets close() must still exit; close() joins it.
        try:
            if output.kind == "device":
                output.start(self._render)
        except BaseException:
            output.close()
            raise
        self._thread.start()

    # ----- feeding side (reader thread) -------------------------------------
    def feed(self, track: Track, pcm: Pcm, *, timeout: Optional[float] = None) -> bool:
        """Queue samples of ``track``. False (and nothing queued) if the track was cut.

        Waits while the queue is over its bound, up to ``timeout`` seconds.
        """
        if not len(pcm):
            return not track.cut
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._buffered > self._max_buffered and not (track.cut or self._closing):
                remaining = _MAX_IDLE_WAIT if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, _MAX_IDLE_WAIT))
            if track.cut or self._closing:
                return False
            self._items.append((track, pcm))
            track.fed += len(pcm)
            self._buffered += len(pcm)
            self._cond.notify_all()
        self._ensure_running()
        return True

    def mark(self, track: Track, kind: str, payload: Any = None) -> bool:
        """Queue a cue after the audio fed so far; it fires when that point is heard."""
        with self._cond:
            if track.cut or self._closing:
                return False
            self._items.append((track, _Cue(kind, payload)))
            self._cond.notify_all()
        self._ensure_running()
        return True

    def finish(self, track: Track) -> bool:
        """No more audio for ``track``: an ``"end"`` cue fires when its last sample is heard."""
        return self.mark(track, "end")

    def cut(self, tracks: Iterable[Track]) -> None:
        """Drop the audio and cues of ``tracks`` now; later feeds of them are refused.

        Returns at once: silencing audio the output already buffered happens on the
        player thread.
        """
        with self._cond:
            cut_any = False
            for track in tracks:
                if not track.cut:
                    track.cut = True
                    cut_any = True
                    self._flush = self._flush or (track.taken > 0 and not track.ended)
            if not cut_any:
                return
            if self._items and self._items[0][0].cut:
                self._head_pos = 0
            self._items = collections.deque(item for item in self._items if not item[0].cut)
            self._buffered = sum(len(data) for _, data in self._items if not isinstance(data, _Cue)) - self._head_pos
            self._due = collections.deque(due for due in self._due if not due[1].cut)
            self._cond.notify_all()

    @property
    def buffered_seconds(self) -> float:
        """Audio queued and not yet handed to the output."""
        return self._buffered / self._rate

    def latency(self) -> float:
        """Seconds from handing a sample to the output to it being heard."""
        return self._output.latency()

    # ----- taking side (output thread / player thread) ----------------------
    def _take(self, frames: int, now: float, delay: float) -> Tuple[List[Pcm], int]:
        """Pop up to ``frames`` samples, scheduling the cues passed. Lock held by caller."""
        parts: List[Pcm] = []
        filled = 0
        items = self._items
        while items and filled < frames:
            track, data = items[0]
            if isinstance(data, _Cue):
                items.popleft()
                if data.kind == "end":
                    track.ended = True
                self._due.append((now + delay + filled / self._rate, track, data))
                continue
            if track.taken == 0:
                track.first_taken_at = now
                self._due.append((now + delay + filled / self._rate, track, _Cue("start")))
            count = min(frames - filled, len(data) - self._head_pos)
            parts.append(data[self._head_pos:self._head_pos + count])
            self._head_pos += count
            filled += count
            track.taken += count
            if self._head_pos == len(data):
                items.popleft()
                self._head_pos = 0
        # A cue right behind the last sample belongs to this block too: the end of
        # a track must not wait for the next block to be noticed.
        while items:
            track, cue = items[0]
            if not isinstance(cue, _Cue):
                break
            items.popleft()
            if cue.kind == "end":
                track.ended = True
            self._due.append((now + delay + filled / self._rate, track, cue))
        self._buffered -= filled
        if filled:
            self._last_taken = now
        if filled or self._due:
            self._cond.notify_all()
        return parts, filled

    def _render(self, frames: int, delay: float) -> Pcm:
        """PortAudio callback body: exactly ``frames`` samples, silence where none are queued."""
        with self._cond:
            parts, filled = self._take(frames, time.monotonic(), delay)
        return _join(parts, filled, frames)

    def _run(self) -> None:
        output = self._output
        while True:
            to_write: List[Pcm] = []
            due: List[_Due] = []
            flush = False
            with self._cond:
                if self._closing:
                    return
                now = time.monotonic()
                if output.kind == "sink" and self._items:
                    to_write, _ = self._take(self._buffered, now, 0.0)
                elif output.kind == "clock":
                    to_write = self._tick_clock(now)
                while self._due and self._due[0][0] <= now:
                    due.append(self._due.popleft())
                flush, self._flush = self._flush, False
                idle = output.kind == "device" and not (self._items or self._due)
                if not (to_write or due or flush) and not (idle and self._idle_expired(now)):
                    self._cond.wait(self._wait_time(now))
                    continue
            try:
                if flush or idle:
                    self._tend_stream(flush)
                for pcm in to_write:
                    output.write(pcm)
            except Exception as exc:  # an output that fails must fail the utterance, not the thread
                logger.exception("audio output %r failed", output)
                self._on_failure(exc)
            for when, track, cue in due:
                if not track.cut:
                    try:
                        self._listener(track, cue.kind, cue.payload, when)
                    except Exception as exc:
                        logger.exception("player listener failed on %s cue", cue.kind)
                        self._on_failure(exc)

    def _ensure_running(self) -> None:
        """Restart a suspended device stream (caller holds no lock)."""
        if self._running or self._output.kind != "device":
            return
        with self._stream_lock:
            if not self._running and not self._closing:
                self._output.resume()
                self._running = True

    def _idle_expired(self, now: float) -> bool:
        return self._running and now - self._last_taken >= _SUSPEND_AFTER

    def _tend_stream(self, flush: bool) -> None:
        """Player thread: flush the device after a cut, or stop it when idle."""
        with self._stream_lock:
            if not self._running:
                return
            if flush:
                self._output.discard_buffered()
            with self._cond:
                idle = not (self._items or self._due) and self._idle_expired(time.monotonic())
            if idle:
                self._output.suspend()
                self._running = False
                # A feed that saw _running still True skipped the restart: catch it here.
                with self._cond:
                    arrived = bool(self._items)
                if arrived:
                    self._output.resume()
                    self._running = True

    def _tick_clock(self, now: float) -> List[Pcm]:
        """Clock outputs: take one block per block period while audio is queued."""
        block = self._output.block_frames
        blocks: List[Pcm] = []
        if self._clock_next is None:
            if not self._items:
                return blocks
            self._clock_next = now
        while self._clock_next is not None and self._clock_next <= now:
            if not self._items:
                self._clock_next = None
                break
            parts, filled = self._take(block, self._clock_next, 0.0)
            blocks.append(_join(parts, filled, block))
            self._clock_next += block / self._rate
        return blocks

    def _wait_time(self, now: float) -> float:
        suspend_at = self._last_taken + _SUSPEND_AFTER if self._running and not self._items else None
        deadlines = [when for when in (self._clock_next, self._due[0][0] if self._due else None, suspend_at)
                     if when is not None]
        if not deadlines:
            return _MAX_IDLE_WAIT
        return max(0.0, min(min(deadlines) - now, _MAX_IDLE_WAIT))

    # ----- life cycle ---------------------------------------------------------
    def close(self) -> None:
        """Drop everything, stop the player thread and release the output. Idempotent."""
        with self._cond:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
                for track, _ in self._items:
                    track.cut = True
                self._items.clear()
                self._due.clear()
                self._buffered = 0
                self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(_JOIN_TIMEOUT)
            if self._thread.is_alive():
                logger.error("player thread did not stop within %.1f s", _JOIN_TIMEOUT)
        if not already:
            self._output.close()


def _join(parts: List[Pcm], filled: int, frames: int) -> Pcm:
    """``parts`` as one block of exactly ``frames`` samples, silence-padded."""
    if filled == frames and len(parts) == 1:
        return parts[0]
    out = np.zeros(frames, dtype=np.int16)
    position = 0
    for part in parts:
        out[position:position + len(part)] = part
        position += len(part)
    return out
