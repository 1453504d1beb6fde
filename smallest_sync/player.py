"""Plays queued PCM in order and knows, to the sample, what has been played.

Audio of each utterance is a :class:`Track`. The reader thread feeds decoded
samples into the player's queue, which is emptied into the output: a sound card
block by block as its buffer frees up, a real-time clock likewise, files and
functions as the audio comes. Cues — the start
and end of a track, later word marks — travel in the same queue, so they fire
exactly when the audio around them is *heard*: the moment the output took the
sample plus the output's reported latency.

Cutting a track (interrupt, cancel) removes its audio under the same lock that
feeding takes, so after :meth:`Player.cut` returns no later :meth:`Player.feed` of
that track can reach the output.

A sound card's buffer is dropped after a cut and on :meth:`Player.pause`; what it
held that is not heard yet, of tracks not cut, goes back to the head of the queue
with its cues, so nothing is lost and no cue fires for audio that was never heard.

Threads (started here): ``smallest-player`` dispatches cues at their time, runs
the clock of real-time null output and writes sinks; for a sound card,
``smallest-audio`` is the only thread that calls the device after it is opened:
it writes one block at a time (timed so the device has room for it) and drops
the device's buffer when asked to.
"""
from __future__ import annotations

import collections
import heapq
import itertools
import logging
import math
import threading
import time
from typing import Any, Callable, Deque, Iterable, List, Optional, Tuple, Union

import numpy as np

from ._types import Pcm
from .audio import AudioOutput
from .errors import AudioDeviceError

logger = logging.getLogger(__name__)

__all__ = ["Player", "Track"]

#: (track, kind, payload, heard_at): runs on the player thread when a cue is heard.
Listener = Callable[["Track", str, Any, float], None]

_JOIN_TIMEOUT = 5.0
# A device write that returns later than this after it was called waited for room,
# so the fill read right after it is exact (PortAudio's reported fill lags otherwise).
_WRITE_BLOCKED = 0.002
# To read the device's fill exactly, the writer wakes this long before the device
# has room for a block, so the write waits for that room (with 4 ms, late wake-ups
# under load made heard times jitter by up to 10 ms).
_WRITE_AHEAD = 0.008
# ... and does so at least once per this many blocks (~1 s of 100 ms blocks), to
# follow a device clock that drifts from ours or a device that skipped.
_RESYNC_BLOCKS = 10
# When a device's buffer is dropped (pause, or a cut with other tracks' audio in it),
# what it was to play from this long before the drop was asked for is queued again.
# Through PulseAudio the drop also loses up to ~10 ms that had been handed on for
# playing (measured on the recorded sink): without the margin resume() would skip
# that much; with it, it repeats 5-20 ms instead.
_REPLAY_MARGIN = 0.015
# The player thread wakes at least this often even with nothing due, so a lost
# notification can delay it but never stall it.
_MAX_IDLE_WAIT = 1.0


class Track:
    """The player's view of one utterance. Fields are guarded by the player's lock."""

    __slots__ = ("label", "cut", "fed", "taken", "first_taken_at", "started", "ended", "heard_out", "cues",
                 "finished", "clock", "heard_from")

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.cues: Deque[Tuple[int, _Cue]] = collections.deque()  # at sample positions, in order
        self.cut = False  # dropped: no more of it may be played
        self.fed = 0  # samples queued so far
        self.taken = 0  # samples handed to the output so far
        self.first_taken_at: Optional[float] = None  # monotonic time of the first one
        self.started = False  # its start cue is due or has fired
        self.ended = False  # its end cue has been taken
        self.heard_out = False  # its end cue has fired: nothing of it is left in the device
        self.finished = False  # finish() was called: no more audio or cues are accepted
        # (when the last block taken starts being heard, samples of the track before it):
        # places a cue that arrives after its sample was taken.
        self.clock: Tuple[float, int] = (0.0, 0)
        self.heard_from = 0.0  # when its first sample is heard

    def __repr__(self) -> str:
        return f"Track({self.label!r}, fed={self.fed}, taken={self.taken}, cut={self.cut})"


class _Cue:
    __slots__ = ("kind", "payload", "position")

    def __init__(self, kind: str, payload: Any = None, position: Optional[int] = None) -> None:
        self.kind = kind
        self.payload = payload
        self.position = position  # the sample it marks (mark_at), or None: in the queue's order


_Item = Tuple[Track, Union[Pcm, _Cue]]
_Due = Tuple[float, int, Track, _Cue]  # (when heard, tie-break, ...): a heap
#: (when heard, track, samples or a queued cue): what went to a device and may be unheard.
_Handed = Tuple[float, Track, Union[Pcm, _Cue]]


class Player:
    """Plays tracks through one :class:`~smallest_sync.audio.AudioOutput`.

    Args:
        output: where samples go; opened here, so a bad device fails the constructor.
        sample_rate: of every sample fed.
        listener: called on the player thread for each cue when it is heard.
        on_failure: called on the player thread with an output error.
        max_buffered: samples the queue may hold before :meth:`feed` waits for the
            output to catch up (bounds memory when a server sends far ahead).
        stall_timeout: a device that takes no sample for this long while audio
            waits is lost: it is marked broken and ``on_failure`` gets AudioDeviceError.
    """

    def __init__(
        self,
        output: AudioOutput,
        sample_rate: int,
        *,
        listener: Listener,
        on_failure: Callable[[BaseException], None],
        max_buffered: Optional[int] = None,
        stall_timeout: Optional[float] = None,
    ) -> None:
        self._output = output
        self._stall_timeout = stall_timeout
        self._rate = sample_rate
        self._listener = listener
        self._on_failure = on_failure
        self._max_buffered = max_buffered or sample_rate * 120
        # Guards _items, _head_pos, _buffered, _due, _flush_wanted, _flush_done, _paused, _closing, _clock_next,
        # _writer_idle, _progress_at and every Track's fields. Held only for short copies, never while
        # calling user code or the output.
        self._cond = threading.Condition()
        self._items: Deque[_Item] = collections.deque()
        self._head_pos = 0  # samples of the head item already taken
        self._buffered = 0  # samples queued and not yet taken
        self._due: List[_Due] = []
        self._due_order = itertools.count()
        self._paused = False
        # The device failed (stalled or raised): PortAudio calls on a dead stream can
        # block forever (seen: start_stream after the sound server died), so none are made.
        self._broken = False
        # Device flushes asked for (by cut) and done (player thread). While they
        # differ nothing is taken, so only cut audio is dropped.
        self._flush_wanted = 0
        self._flush_done = 0
        self._closing = False
        self._clock_next: Optional[float] = None
        # The device writer waits for audio (not inside a write): a feed must wake it.
        self._writer_idle = False
        # When the output last took a sample, or audio began waiting for it (stall watch).
        self._progress_at = time.monotonic()
        # Clock and sink outputs take a block and write it under this lock, so cut()
        # waits for a block in flight rather than letting it "play" after returning.
        self._write_lock = threading.Lock()
        self._feed_waiters = 0  # feeds waiting for room: takes must wake them
        # Device outputs: the pieces and queued cues taken, oldest first, until heard; what a
        # dropped device buffer held is put back in the queue from here (pause, cut).
        self._handed: Deque[_Handed] = collections.deque()
        self.flushed_at: Optional[float] = None  # monotonic time the device buffer was last dropped
        self.taken_total = 0  # samples the output has taken, all tracks (stall watchdog)
        output.open(sample_rate)
        # Daemons: a script that forgets close() must still exit; close() joins them.
        self._thread = threading.Thread(target=self._run, name="smallest-player", daemon=True)
        self._writer: Optional[threading.Thread] = None
        if output.kind == "device":
            self._writer = threading.Thread(target=self._write_device, name="smallest-audio", daemon=True)
            self._writer.start()
        self._thread.start()

    # ----- feeding side (reader thread) -------------------------------------
    def feed(self, track: Track, pcm: Pcm, *, timeout: Optional[float] = None) -> bool:
        """Queue samples of ``track``. False (and nothing queued) if the track was cut.

        Waits while the queue is over its bound: for as long as playback is paused,
        otherwise up to ``timeout`` seconds of the output taking nothing.
        """
        if not len(pcm):
            return not track.cut
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._buffered > self._max_buffered and not (track.cut or self._closing):
                if self._paused and deadline is not None:
                    deadline = time.monotonic() + timeout  # type: ignore[operator]  # a pause is not a stall
                remaining = _MAX_IDLE_WAIT if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    # The output took nothing for ``timeout``: drop this rather than grow
                    # without bound; the Speaker's watchdog fails the utterance.
                    logger.warning("audio output stalled; dropping %d samples", len(pcm))
                    return False
                self._feed_waiters += 1
                try:
                    self._cond.wait(min(remaining, _MAX_IDLE_WAIT))
                finally:
                    self._feed_waiters -= 1
            if track.cut or track.finished or self._closing:
                return False
            if not self._items:
                self._progress_at = time.monotonic()  # the stall clock starts now
            self._items.append((track, pcm))
            track.fed += len(pcm)
            self._buffered += len(pcm)
            if self._output.kind != "device" or self._writer_idle:
                # A device writer busy writing comes back for more by itself.
                self._cond.notify_all()
        return True

    def mark(self, track: Track, kind: str, payload: Any = None) -> bool:
        """Queue a cue after the audio fed so far; it fires when that point is heard."""
        with self._cond:
            if track.cut or track.finished or self._closing:
                return False
            self._items.append((track, _Cue(kind, payload)))
            track.finished = track.finished or kind == "end"
            self._cond.notify_all()
        return True

    def mark_at(self, track: Track, position: int, kind: str, payload: Any = None) -> bool:
        """A cue that fires when sample ``position`` of ``track`` is heard (at once if it
        already was). Cues must come in position order."""
        with self._cond:
            if track.cut or track.finished or self._closing:
                return False
            cue = _Cue(kind, payload, position)
            if position < track.taken:  # taken already: due when that sample is heard
                start, before = track.clock
                rate = self._rate if self._output.kind != "sink" else float("inf")
                self._schedule(max(start + (position - before) / rate, track.heard_from), track, cue)
                self._cond.notify_all()
                return True
            cues = track.cues
            at = len(cues)
            while at and cues[at - 1][0] > position:  # out-of-order words stay in order
                at -= 1
            cues.insert(at, (position, cue))
            return True

    def _schedule(self, when: float, track: Track, cue: _Cue) -> None:
        heapq.heappush(self._due, (when, next(self._due_order), track, cue))

    def pause(self) -> None:
        """Stop playing now; nothing is lost. A device's buffer is dropped and what it
        held, not yet heard, goes back to the head of the queue with its cues (the few
        milliseconds the device plays before the drop are heard again on resume)."""
        with self._cond:
            if self._paused:
                return
            self._paused = True
            if (self._output.kind == "device" and not self._broken
                    and self._take_back(time.monotonic() - _REPLAY_MARGIN)):
                self._flush_wanted = self._flush_done + 1
            self._cond.notify_all()

    def resume(self) -> None:
        """Carry on from the exact sample where :meth:`pause` stopped."""
        with self._cond:
            self._paused = False
            self._progress_at = time.monotonic()
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def finish(self, track: Track) -> bool:
        """No more audio for ``track``: an ``"end"`` cue fires when its last sample is heard."""
        return self.mark(track, "end")

    def cut(self, tracks: Iterable[Track]) -> None:
        """Drop the audio and cues of ``tracks`` now; later feeds of them are refused.

        Returns at once: silencing audio the output already buffered happens on the
        player thread.
        """
        with self._write_lock, self._cond:
            cut_any = False
            for track in tracks:
                if not track.cut:
                    track.cut = True
                    cut_any = True
                    # Some of it may still sit in the device's buffer: drop that too.
                    if track.taken > 0 and not track.heard_out and self._output.kind == "device":
                        self._flush_wanted = self._flush_done + 1
            if not cut_any:
                return
            if self._flush_wanted != self._flush_done:
                # Other tracks' audio in the buffer about to be dropped plays later instead.
                self._take_back(time.monotonic() - _REPLAY_MARGIN)
            if self._items and self._items[0][0].cut:
                self._head_pos = 0
            self._items = collections.deque(item for item in self._items if not item[0].cut)
            self._buffered = sum(len(data) for _, data in self._items if not isinstance(data, _Cue)) - self._head_pos
            self._due = [due for due in self._due if not due[2].cut]
            heapq.heapify(self._due)
            for track in tracks:
                track.cues.clear()
            self._cond.notify_all()

    @property
    def kind(self) -> str:
        """The output's kind: ``"device"``, ``"clock"`` or ``"sink"``."""
        return self._output.kind

    def mark_broken(self) -> None:
        """The output is lost: stop touching it (any thread). Audio then goes nowhere
        and every later utterance fails on the stall watchdog."""
        with self._cond:
            self._broken = True
            self._flush_done = self._flush_wanted
            self._cond.notify_all()

    @property
    def broken(self) -> bool:
        return self._broken

    @property
    def has_queued(self) -> bool:
        """Audio or cues are waiting for the output."""
        return bool(self._items)

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
        # Sinks have no clock: a sample written is a sample heard, so every cue
        # passed is due now. Devices and clocks play the block from ``now + delay`` on.
        rate = self._rate if self._output.kind != "sink" else float("inf")
        scheduled = len(self._due)
        if self._paused or self._flush_wanted != self._flush_done:
            return parts, 0  # (a pending flush: take nothing until the device buffer is dropped)
        handed = self._handed if self._output.kind == "device" else None
        if handed is not None:
            self._forget_heard(now - _REPLAY_MARGIN)  # what a take-back may still want
        while items and filled < frames:
            track, data = items[0]
            if isinstance(data, _Cue):
                items.popleft()
                self._cue_taken(track, data, now + delay + filled / rate)
                if handed is not None:
                    handed.append((now + delay + filled / rate, track, data))
                continue
            if not track.started:
                track.started = True
                if track.first_taken_at is None:
                    track.first_taken_at = now
                track.heard_from = now + delay + filled / rate
                self._schedule(track.heard_from, track, _Cue("start"))
            track.clock = (now + delay + filled / rate, track.taken)
            count = min(frames - filled, len(data) - self._head_pos)
            cues = track.cues
            while cues and cues[0][0] < track.taken + count:
                position, cue = cues.popleft()
                self._schedule(now + delay + (filled + max(position - track.taken, 0)) / rate, track, cue)
            part = data[self._head_pos:self._head_pos + count]
            parts.append(part)
            if handed is not None:
                handed.append((now + delay + filled / rate, track, part))
            self._head_pos += count
            filled += count
            track.taken += count
            if self._head_pos == len(data):
                items.popleft()
                self._head_pos = 0
        # A cue right behind the last sample belongs to this block too: the end of
        # a track must not wait for the next block to be noticed.
        while items:
            track, trailing = items[0]
            if not isinstance(trailing, _Cue):
                break
            items.popleft()
            self._cue_taken(track, trailing, now + delay + filled / rate)
            if handed is not None:
                handed.append((now + delay + filled / rate, track, trailing))
        self._buffered -= filled
        if filled:
            self._progress_at = now
            self.taken_total += filled
        if scheduled != len(self._due) or self._feed_waiters:
            self._cond.notify_all()
        return parts, filled

    def _forget_heard(self, now: float) -> None:
        """Lock held: drop from :attr:`_handed` what has been heard by ``now``."""
        handed = self._handed
        while handed:
            when, _, data = handed[0]
            if when + (0 if isinstance(data, _Cue) else len(data) / self._rate) > now:
                break
            handed.popleft()

    def _take_back(self, now: float) -> int:
        """Lock held; the device's buffer is about to be dropped. What it holds that is
        not heard by ``now`` (of tracks not cut) goes back to the head of the queue, its
        cues back to where they were taken from. Returns the samples put back.

        Samples and cues are on one timeline (``_take`` places both), so a cue comes
        back when its sample does, and only if it has not fired: every cue fires once.
        """
        back: List[_Item] = []  # newest first
        pending = {due[3] for due in self._due}  # cues not fired yet
        cues_back = set()
        samples = 0
        handed = self._handed
        while handed:
            when, track, data = handed[-1]
            if isinstance(data, _Cue):
                if when < now:
                    break
                handed.pop()
                if not (track.cut or track.heard_out) and data in pending:  # (one that fired stays fired)
                    back.append((track, data))
                    cues_back.add(data)
                    if data.kind == "end":
                        track.ended = False
                continue
            heard = max(0, math.ceil((now - when) * self._rate))  # samples of it heard by now
            if heard >= len(data):
                break
            handed.pop()
            if not (track.cut or track.heard_out):  # (a track heard to its end is not replayed)
                back.append((track, data[heard:]))
                track.taken -= len(data) - heard
                samples += len(data) - heard
            if heard:
                break
        handed.clear()  # the rest is heard (or being heard): nothing of it can come back
        if not back:
            return 0
        if self._head_pos:  # the head item's taken part is now in front of it again
            track, data = self._items[0]
            self._items[0] = (track, data[self._head_pos:])  # type: ignore[index]
            self._head_pos = 0
        self._items.extendleft(back)  # (reverses it: oldest first)
        self._buffered += samples
        # Their cues not yet heard: queued ones are back in the queue, the rest go back
        # to their track's marks (a start cue is made again when sample 0 is retaken).
        tracks = {track for track, _ in back}
        kept: List[_Due] = []
        for due in self._due:
            track, cue = due[2], due[3]
            if track in tracks:
                if cue in cues_back:
                    continue
                if cue.position is None and cue.kind == "start" and not track.taken:
                    track.started = False  # made again when sample 0 is retaken
                    continue
                if cue.position is not None and cue.position >= track.taken:
                    track.cues.append((cue.position, cue))
                    continue
            kept.append(due)
        for track in tracks:
            if len(track.cues) > 1:
                track.cues = collections.deque(sorted(track.cues, key=lambda mark: mark[0]))
        self._due = kept
        heapq.heapify(self._due)
        return samples

    def _cue_taken(self, track: Track, cue: _Cue, when: float) -> None:
        if cue.kind == "end":
            track.ended = True
            while track.cues:  # cues placed past the last sample fire with the end
                self._schedule(when, track, track.cues.popleft()[1])
        self._schedule(when, track, cue)

    def _run(self) -> None:
        output = self._output
        while True:
            due: List[_Due] = []
            with self._cond:
                if self._closing:
                    return
                now = time.monotonic()
                write = output.kind == "sink" and bool(self._items) and not self._paused
                clock_due = output.kind == "clock" and not self._paused and (
                    (self._clock_next is not None and self._clock_next <= now)
                    or (self._clock_next is None and bool(self._items)))
                while self._due and self._due[0][0] <= now:
                    item = heapq.heappop(self._due)
                    if item[3].kind == "end":
                        item[2].heard_out = True
                    due.append(item)
                stalled = self._stalled(now)
                if stalled:
                    self._broken = True
                    self._cond.notify_all()  # the device writer stops touching the device
                if not (write or due or clock_due or stalled):
                    self._cond.wait(self._wait_time(now))
                    continue
            if stalled:
                logger.error("the audio device took nothing for %.1f s: treating it as lost", self._stall_timeout)
                self._on_failure(AudioDeviceError(
                    f"the audio device took no samples for {self._stall_timeout:.1f} s; it is treated as lost"))
            try:
                if clock_due:
                    self._play_clock()
                if write:
                    self._play_sink()
            except Exception as exc:  # an output that fails must fail the utterance, not the thread
                logger.exception("audio output %r failed", output)
                self._on_failure(exc)
            for when, _, track, cue in due:
                if not track.cut:
                    try:
                        self._listener(track, cue.kind, cue.payload, when)
                    except Exception:  # a bug in the listener is not the device's fault
                        logger.exception("player listener failed on %s cue", cue.kind)

    def _stalled(self, now: float) -> bool:
        """Lock held: the device has taken nothing for the stall timeout while audio
        waits (the sound server died, the card was unplugged)."""
        return (self._stall_timeout is not None and self._output.kind == "device"
                and not self._broken and not self._paused and bool(self._items)
                and now - self._progress_at >= self._stall_timeout)

    def _write_device(self) -> None:
        """``smallest-audio``: write queued audio to the device a block at a time, and
        drop the device's buffer when a cut asks for it. A device error marks the
        output broken (never touched again) and is reported through ``on_failure``.

        The thread wakes once per block: it waits on the player's condition (which
        a cut, pause or close wakes) until the device has had room for the block
        for a while (:class:`_DeviceTimeline`), then writes it, normally without
        blocking. A write into a full device would block for up to a block while a
        cut waits behind it; each extra wake-up costs CPU (~50 µs on a VM).
        """
        output = self._output
        block = output.block_frames
        timeline = _DeviceTimeline(output.capacity, block, self._rate)
        try:
            while True:
                with self._cond:
                    while not (self._closing or self._broken or self._flush_wanted != self._flush_done):
                        if not self._items or self._paused:
                            self._writer_idle = True  # a feed or resume() wakes it
                            self._cond.wait(_MAX_IDLE_WAIT)
                            self._writer_idle = False
                            continue
                        wait = timeline.next_write_at - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)  # a cut, pause or close wakes it
                    if self._closing or self._broken:
                        return
                    flush = self._flush_wanted if self._flush_wanted != self._flush_done else 0
                    if not flush:
                        now = time.monotonic()
                        parts, filled = self._take(block, now, max(0.0, timeline.played_at - now))
                if flush:
                    try:
                        output.discard_buffered()
                    finally:
                        with self._cond:
                            self._flush_done = flush
                            self.flushed_at = time.monotonic()
                    timeline.emptied()
                    continue
                if not filled:
                    continue
                before = time.monotonic()
                output.write(parts[0] if len(parts) == 1 else np.concatenate(parts))
                written = time.monotonic()
                timeline.wrote(filled, before, written, max(0, output.capacity - output.room()))
        except Exception as exc:  # a failing device must fail the utterances, not the thread
            logger.exception("audio output %r failed", output)
            self.mark_broken()
            self._on_failure(exc)

    def _play_sink(self) -> None:
        """Sinks: write what is queued, one bounded block at a time under the write lock,
        so cut() never returns while a block of a cut track is still to be written."""
        block = max(1, self._rate // 10)
        while True:
            with self._write_lock:
                with self._cond:
                    if self._paused or self._closing or not self._items:
                        return
                    parts, _ = self._take(block, time.monotonic(), 0.0)
                for part in parts:
                    self._output.write(part)

    def _play_clock(self) -> None:
        """Clock outputs: take the blocks now due and write them, as one step for cut()."""
        with self._write_lock:
            with self._cond:
                blocks = self._tick_clock(time.monotonic())
            for block in blocks:
                self._output.write(block)

    def _tick_clock(self, now: float) -> List[Pcm]:
        """Clock outputs: take one block per block period while audio is queued."""
        block = self._output.block_frames
        blocks: List[Pcm] = []
        if self._paused:
            self._clock_next = None
            return blocks
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
        stall_at = (self._progress_at + self._stall_timeout
                    if self._output.kind == "device" and self._stall_timeout is not None and not self._broken
                    and not self._paused and self._items else None)
        deadlines = [when for when in (self._clock_next, self._due[0][0] if self._due else None, stall_at)
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
                self._handed.clear()
                self._due.clear()
                self._buffered = 0
                self._cond.notify_all()
        stuck = False
        for thread in (self._thread, self._writer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(_JOIN_TIMEOUT)
                if thread.is_alive():
                    stuck = True
                    logger.error("%s thread did not stop within %.1f s", thread.name, _JOIN_TIMEOUT)
        if not already:
            # The output is only closed once the threads that write it are gone: one
            # stuck inside PortAudio must not hang close() or have the stream closed under it.
            if self._broken:
                logger.warning("the audio output was lost; leaving it unclosed (PortAudio may hang on it)")
            elif stuck:
                logger.error("the audio output is hung; abandoning it without closing")
            else:
                self._output.close()


class _DeviceTimeline:
    """When the audio written to a device will have played, and when to write next
    (monotonic seconds), for the ``smallest-audio`` thread.

    The fill PortAudio reports lags behind the device (through PulseAudio it moves
    in bursts, as the server asks for data), so it over-states what is left. Read
    right after a write that had to wait for room, it is exact; read after any
    other write, it is an upper bound. So the timeline is set from the fill after
    a write that waited (or found the device run dry), and otherwise advanced by
    the length of each block written, never past what the device reports.

    Writes are timed to wake the thread once per block: half a block after the
    device has room for it, so the write does not wait (and the fill stays over
    one and a half blocks, slack for a late wake-up). Only to read the fill
    exactly (once the device is full after running dry, then every
    :data:`_RESYNC_BLOCKS` blocks) is a write issued just before the room is due.
    """

    __slots__ = ("_capacity", "_block", "_rate", "_until_sync", "played_at", "next_write_at")

    def __init__(self, capacity: int, block: int, rate: int) -> None:
        self._capacity = capacity
        self._block = block
        self._rate = rate
        self._until_sync = 0  # blocks to write before the next exact read
        self.played_at = 0.0  # what the device holds has played by then
        self.next_write_at = 0.0

    def emptied(self) -> None:
        """The device's buffer was dropped."""
        self.played_at = self.next_write_at = 0.0

    def wrote(self, frames: int, before: float, after: float, fill: int) -> None:
        """A write of ``frames`` was called at ``before`` and returned at ``after``,
        leaving the device reporting ``fill`` frames held."""
        reported = after + fill / self._rate
        if after - before > _WRITE_BLOCKED:  # it waited for room: the fill is exact
            self.played_at = reported
            self._until_sync = _RESYNC_BLOCKS
        elif self.played_at < before:  # the device ran dry: start from what it reports
            self.played_at = reported
            self._until_sync = 0
        else:
            self.played_at = min(self.played_at + frames / self._rate, reported)
            self._until_sync -= 1
        room_at = self.played_at - (self._capacity - self._block) / self._rate  # room for a block from then
        if self._until_sync <= 0:
            self.next_write_at = room_at - _WRITE_AHEAD
        else:
            self.next_write_at = room_at + self._block / 2 / self._rate


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
