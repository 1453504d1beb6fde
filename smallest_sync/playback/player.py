"""Plays queued PCM in order and knows, to the sample, what has been heard.

Audio of each utterance is a :class:`Track`. The reader thread feeds decoded
samples into the player's queue; the output thread takes them out at the pace
its :mod:`pacer <smallest_sync.playback.pacers>` sets. Cues — the start and end
of a track, word marks — travel in the same queue, so they fire exactly when the
audio around them is *heard*: when the block holding it starts playing, plus its
position in the block.

Cutting a track (interrupt, cancel) removes its audio under the lock that feeding
and taking use, so after :meth:`Player.cut` returns no block holding that track's
audio is taken, and a block taken just before is written without it. A sound
card's buffer is dropped after a cut and on :meth:`Player.pause`; what it held
that is not heard yet, of tracks not cut, goes back to the head of the queue with
its cues, so nothing is lost and no cue fires for audio that was never heard.

Threads (started here): ``smallest-audio`` is the only thread that calls the
output after it is opened, always without a lock held; ``smallest-player`` fires
cues at their time, through the ``listener``.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Iterable, List, Optional, Tuple, Union

from .._types import Pcm
from ..errors import AudioDeviceError
from .outputs import AudioOutput
from .cues import Cue, DueCues, Handed, Track, tell
from .pacers import Pacer, Taken, make_pacer
from .recovery import DeviceListener, Reopener

logger = logging.getLogger(__name__)

__all__ = ["Player", "Track"]

#: (track, kind, payload, heard_at): runs on the player thread when a cue is heard.
Listener = Callable[["Track", str, Any, float], None]

_JOIN_TIMEOUT = 5.0
# close() waits this long for smallest-audio stuck in a write (a hung sound server),
# then abandons the device unclosed (closing could hang too); the daemon ends if it returns.
AUDIO_JOIN_TIMEOUT = 1.0
# A dropped device buffer (pause, cut) is queued again from this long before the drop:
# through PulseAudio a drop also loses a few milliseconds handed on for playing.
_REPLAY_MARGIN = 0.015
# The player's threads wake at least this often even with nothing due, so a lost
# notification can delay them but never stall them.
_MAX_IDLE_WAIT = 1.0


_Item = Tuple[Track, Union[Pcm, Cue]]


class Player:
    """Plays tracks through one :class:`~smallest_sync.playback.outputs.AudioOutput`.

    Args:
        output: where samples go; opened here, so a bad device fails the constructor.
        sample_rate: of every sample fed.
        listener: called on the ``smallest-player`` thread for each cue when it is heard.
        on_failure: called on ``smallest-audio`` with an output's error, unless a
            device failed before anything of what was taken could be heard.
        on_device: called on ``smallest-audio`` when a device is lost and when it is back.
        max_buffered: samples the queue may hold before :meth:`feed` waits for the
            output to catch up (bounds memory when a server sends far ahead).
        pacer: how audio leaves the queue; by default the one for the output's kind.
    """

    def __init__(
        self,
        output: AudioOutput,
        sample_rate: int,
        *,
        listener: Listener,
        on_failure: Callable[[BaseException], None],
        on_device: Optional[DeviceListener] = None,
        max_buffered: Optional[int] = None,
        pacer: Optional[Callable[[AudioOutput, int], Pacer]] = None,
    ) -> None:
        self._output = output
        self._rate = sample_rate
        self._listener = listener
        self._on_failure = on_failure
        self._max_buffered = max_buffered or sample_rate * 120
        # Guards _items, _head_pos, _buffered, _due, _handed, _flush_wanted, _flush_done, _paused,
        # _broken, _closing, _writer_idle, _progress_at, the pacer's state and every Track's
        # fields. Held only for short steps: never while calling the output or the listener.
        self._cond = threading.Condition()
        self._items: Deque[_Item] = collections.deque()
        self._head_pos = 0  # samples of the head item already taken
        self._buffered = 0  # samples queued and not yet taken
        self._due = DueCues()
        self._paused = False
        # The output failed and cannot be reopened: it is never touched again.
        self._broken = False
        self._reopener = Reopener(output, on_device or (lambda state, error: None))
        # Buffer drops asked for (by cut, pause) and done (output thread). While they
        # differ nothing is taken, so only what was asked for is dropped.
        self._flush_wanted = self._flush_done = 0
        self._closing = False
        # The output thread waits for audio (not for its pacer): a feed must wake it.
        self._writer_idle = False
        # When the output last took a sample, or audio began waiting for it (stall watch).
        self._progress_at = time.monotonic()
        self._feed_waiters = 0  # feeds waiting for room: takes must wake them
        # What an output that holds audio has not played yet: queued again on a drop.
        self._handed = Handed(sample_rate)
        self._written_cues: List[Tuple[float, Track, Cue]] = []  # cues of the block being written
        self._last_end_at = 0.0  # no track starts being heard before the one ahead of it ended
        self.flushed_at: Optional[float] = None  # monotonic time the device buffer was last dropped
        output.open(sample_rate)
        self._pacer = (pacer or make_pacer)(output, sample_rate)
        # Daemons: a script that forgets close() must still exit; close() joins them.
        self._thread = threading.Thread(target=self._run_cues, name="smallest-player", daemon=True)
        self._writer = threading.Thread(target=self._run_output, name="smallest-audio", daemon=True)
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
            if track.cut or track.sealed or self._closing:
                return False
            if not self._items:
                self._progress_at = time.monotonic()  # the stall clock starts now
            self._items.append((track, pcm))
            track.counts.fed += len(pcm)
            self._buffered += len(pcm)
            if self._writer_idle:  # a writer that is busy comes back for more by itself
                self._cond.notify_all()
        return True

    def mark(self, track: Track, kind: str, payload: Any = None) -> bool:
        """Queue a cue after the audio fed so far; it fires when that point is heard."""
        with self._cond:
            if track.cut or track.sealed or self._closing:
                return False
            self._items.append((track, Cue(kind, payload)))
            track.sealed = track.sealed or kind == "end"
            self._cond.notify_all()
        return True

    def mark_at(self, track: Track, position: int, kind: str, payload: Any = None) -> bool:
        """A cue that fires when sample ``position`` of ``track`` is heard (at once if it
        already was). Cues must come in position order."""
        with self._cond:
            if track.cut or track.sealed or self._closing:
                return False
            cue = Cue(kind, payload, position)
            if position < track.counts.taken:  # taken already: due when that sample is heard
                start, before = track.clock
                self._due.push(max(start + (position - before) / self._pacer.heard_rate, track.heard_from),
                               track, cue)
                self._cond.notify_all()
                return True
            cues = track.cues
            at = len(cues)
            while at and cues[at - 1][0] > position:  # out-of-order words stay in order
                at -= 1
            cues.insert(at, (position, cue))
            return True

    def finish(self, track: Track) -> bool:
        """No more audio for ``track``: an ``"end"`` cue fires when its last sample is heard."""
        return self.mark(track, "end")

    # ----- control (any thread) ---------------------------------------------
    def pause(self) -> None:
        """Stop playing now; nothing is lost. A device's buffer is dropped and what it
        held, not yet heard, goes back to the head of the queue with its cues."""
        with self._cond:
            if self._paused:
                return
            self._paused = True
            if (self._pacer.holds_audio and not self._broken
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

    def cut(self, tracks: Iterable[Track]) -> None:
        """Drop the audio and cues of ``tracks`` now; later feeds of them are refused.

        Returns at once, without waiting for the output: no block taken after this
        returns holds their audio, a block taken before is written without it, and
        what a device already buffered is dropped by the output thread.
        """
        with self._cond:
            cut_any = False
            for track in tracks:
                if not track.cut:
                    track.cut = True
                    cut_any = True
                    # Some of it may still sit in the device's buffer: drop that too.
                    if track.counts.taken > 0 and not track.end_heard and self._pacer.holds_audio:
                        self._flush_wanted = self._flush_done + 1
            if not cut_any:
                return
            if self._flush_wanted != self._flush_done:
                # Other tracks' audio in the buffer about to be dropped plays later instead.
                self._take_back(time.monotonic() - _REPLAY_MARGIN)
            if self._items and self._items[0][0].cut:
                self._head_pos = 0
            self._items = collections.deque(item for item in self._items if not item[0].cut)
            self._buffered = sum(len(data) for _, data in self._items if not isinstance(data, Cue)) - self._head_pos
            self._due.keep(lambda due: not due[2].cut)
            for track in tracks:
                track.cues.clear()
            self._cond.notify_all()

    def mark_broken(self) -> None:
        """The output is lost: stop touching it (any thread). Audio then goes nowhere."""
        with self._cond:
            self._broken = True
            self._flush_done = self._flush_wanted
            self._cond.notify_all()

    # ----- state (any thread) -----------------------------------------------
    @property
    def broken(self) -> bool:
        """The output failed for good: it cannot be reopened."""
        return self._broken

    @property
    def buffered_seconds(self) -> float:
        """Audio queued and not yet handed to the output."""
        return self._buffered / self._rate

    def stalled_for(self, now: float) -> float:
        """Seconds that queued audio has waited with the output taking nothing (0 when
        nothing waits, or while paused)."""
        with self._cond:
            if not self._items or self._paused or self._broken or self._closing:
                return 0.0
            return now - self._progress_at

    def latency(self) -> float:
        return self._output.latency()

    # ----- taking side (output thread) --------------------------------------
    def _take(self, frames: int, now: float, delay: float) -> Tuple[Taken, int]:
        """Pop up to ``frames`` samples, scheduling the cues passed. Lock held by caller.

        The block is heard from ``now + delay`` on, at the pacer's ``heard_rate``
        (infinite for sinks: a sample written is a sample heard).
        """
        parts: Taken = []
        filled = 0
        items = self._items
        rate = self._pacer.heard_rate
        scheduled = len(self._due)
        if self._paused or self._flush_wanted != self._flush_done:
            return parts, 0  # (a pending flush: take nothing until the device buffer is dropped)
        handed = self._handed if self._pacer.holds_audio else None
        if handed is not None:
            handed.forget_heard(now - _REPLAY_MARGIN)  # what a take-back may still want
        while items and filled < frames:
            track, data = items[0]
            if isinstance(data, Cue):
                items.popleft()
                self._cue_taken(track, data, now + delay + filled / rate)
                if handed is not None:
                    handed.add((now + delay + filled / rate, track, data))
                continue
            if not track.start_queued:
                track.start_queued = True
                if track.counts.first_taken_at is None:
                    track.counts.first_taken_at = now
                track.heard_from = max(now + delay + filled / rate, self._last_end_at)
                self._schedule(track.heard_from, track, Cue("start"))
            track.clock = (now + delay + filled / rate, track.counts.taken)
            count = min(frames - filled, len(data) - self._head_pos)
            cues = track.cues
            while cues and cues[0][0] < track.counts.taken + count:
                position, cue = cues.popleft()
                self._schedule(now + delay + (filled + max(position - track.counts.taken, 0)) / rate, track, cue)
            part = data[self._head_pos:self._head_pos + count]
            parts.append((track, part))
            if handed is not None:
                handed.add((now + delay + filled / rate, track, part))
            self._head_pos += count
            filled += count
            track.counts.taken += count
            if self._head_pos == len(data):
                items.popleft()
                self._head_pos = 0
        # A cue right behind the last sample belongs to this block too: the end of
        # a track must not wait for the next block to be noticed.
        while items:
            track, trailing = items[0]
            if not isinstance(trailing, Cue):
                break
            items.popleft()
            self._cue_taken(track, trailing, now + delay + filled / rate)
            if handed is not None:
                handed.add((now + delay + filled / rate, track, trailing))
        self._buffered -= filled
        if filled:
            self._progress_at = now
        if scheduled != len(self._due) or self._feed_waiters:
            self._cond.notify_all()
        return parts, filled

    def _take_back(self, now: float) -> int:
        """Lock held; the device's buffer is about to be dropped. What it holds that is
        not heard by ``now`` (of tracks not cut) goes back to the head of the queue, its
        cues back to where they were taken from. Returns the samples put back.

        Samples and cues are on one timeline (``_take`` places both), so a cue comes
        back when its sample does, and only if it has not fired: every cue fires once.
        """
        back, cues_back, samples = self._handed.unheard(now, self._due.cues())
        if not back:
            return 0
        if self._head_pos:  # the head item's taken part is now in front of it again
            track, data = self._items[0]
            self._items[0] = (track, data[self._head_pos:])  # type: ignore[index]
            self._head_pos = 0
        self._items.extendleft(back)  # (reverses it: oldest first)
        self._buffered += samples
        self._due.put_back({track for track, _ in back}, cues_back)
        return samples

    def _schedule(self, when: float, track: Track, cue: Cue) -> None:
        """Lock held: a cue a take passed. Sinks' and clocks' wait for the write."""
        if self._pacer.cues_after_write:
            self._written_cues.append((when, track, cue))
        else:
            self._due.push(when, track, cue)

    def _release_cues(self) -> None:
        """The block is written, so its cues are heard: fire them here, in order."""
        cues, self._written_cues = self._written_cues, []
        for when, track, cue in cues:
            track.end_heard = track.end_heard or cue.kind == "end"  # (read only for devices)
            tell(self._listener, when, track, cue)

    def _cue_taken(self, track: Track, cue: Cue, when: float) -> None:
        if cue.kind == "end":
            track.end_taken = True
            self._last_end_at = when
            while track.cues:  # cues placed past the last sample fire with the end
                self._schedule(when, track, track.cues.popleft()[1])
        self._schedule(when, track, cue)

    # ----- threads ------------------------------------------------------------
    def _run_output(self) -> None:
        """``smallest-audio``: take blocks when the pacer says, and write them with no
        lock held; drop the output's buffer when a cut or pause asks for it; reopen a
        lost device when there is audio to play. Other outputs' failures are reported
        and playing goes on."""
        pacer, reopener = self._pacer, self._reopener
        while True:
            flush = drain = reopen = 0
            with self._cond:
                while True:
                    if self._closing or self._broken:
                        return
                    if reopener.lost and self._items and not self._paused:
                        wait = reopener.wait(time.monotonic())
                        if wait <= 0:
                            reopen = 1
                            break
                        self._cond.wait(min(wait, _MAX_IDLE_WAIT))
                        continue
                    if self._flush_wanted != self._flush_done and not reopener.lost:
                        flush = self._flush_wanted
                        break
                    if not self._items and pacer.tail_pending and not self._paused:
                        drain = 1
                        break
                    if not self._items or self._paused:
                        pacer.idle()
                        self._writer_idle = True  # a feed or resume() wakes it
                        self._cond.wait(_MAX_IDLE_WAIT)
                        self._writer_idle = False
                        continue
                    now = time.monotonic()
                    wait = pacer.wait(now)
                    if wait <= 0:
                        break
                    self._cond.wait(wait)  # a cut, pause or close wakes it
                if not (flush or drain or reopen):
                    taken, filled = self._take(pacer.block, *pacer.take_at(now))
            try:
                if reopen:
                    if reopener.attempt():
                        pacer.reset()
                        reopener.tell("back")
                elif drain:
                    pacer.drain()
                elif flush:
                    try:
                        pacer.drop_buffer()
                    finally:
                        with self._cond:
                            self._flush_done = flush
                            self.flushed_at = time.monotonic()
                elif filled or self._written_cues:
                    if filled:
                        pacer.write(taken, filled)
                    if self._written_cues:
                        self._release_cues()
            except NotImplementedError:  # a device that cannot be reopened: lost for good
                self.mark_broken()
                self._on_failure(AudioDeviceError("the audio device was lost and cannot be reopened"))
            except Exception as exc:  # a failing output must fail the utterances, not the thread
                if not pacer.can_be_lost:
                    logger.exception("audio output %r failed", self._output)
                    self._on_failure(exc)
                    continue
                with self._cond:
                    self._flush_done = self._flush_wanted
                    heard = not pacer.ran_dry  # was any of the device's audio being heard?
                    # What the device held unheard waits for the reopened device; if it
                    # was being heard, the session fails it (and cuts it) instead.
                    self._take_back(time.monotonic())
                    reopener.lose(exc)
                reopener.tell("lost", exc)
                if heard:
                    self._on_failure(exc)

    def _run_cues(self) -> None:
        """``smallest-player``: fire each cue through the listener when it is heard."""
        self._due.fire(self._cond, self._listener, lambda: self._closing, _MAX_IDLE_WAIT)

    # ----- life cycle ---------------------------------------------------------
    def close(self) -> None:
        """Drop everything, stop the player's threads and release the output. Idempotent;
        safe from the output's own ``write`` (that thread is then not waited for)."""
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
        for thread, bound in ((self._thread, _JOIN_TIMEOUT), (self._writer, AUDIO_JOIN_TIMEOUT)):
            if thread is not threading.current_thread():
                thread.join(bound)
                if thread.is_alive():
                    stuck = True
                    logger.error("%s thread did not stop within %.1f s", thread.name, bound)
        if not already:
            # The output is only closed once the thread that writes it is gone: one
            # stuck inside PortAudio must not hang close() or have the stream closed under it.
            if self._broken:
                logger.warning("the audio output was lost; leaving it unclosed (PortAudio may hang on it)")
            elif stuck:
                logger.error("the audio output is hung; abandoning it without closing")
            else:
                self._output.close()
