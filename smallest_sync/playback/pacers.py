"""Pacers: how audio leaves the player's queue for one kind of output.

The player's ``smallest-audio`` thread asks its pacer when the next block may be
taken, takes it from the queue under the player's lock, and then hands it to
:meth:`Pacer.write` with no lock held, so an output may call back into the
Speaker. Each kind of :class:`~smallest_sync.playback.outputs.AudioOutput` has one:

* :class:`DevicePacer` — a sound card sets the pace; blocks are written as its
  buffer frees up, and what it buffered can be dropped (interrupt, pause).
* :class:`ClockPacer` — a real-time clock sets it: one block per block period.
* :class:`SinkPacer` — no clock: audio is written as soon as it is queued.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Type

import numpy as np

from .._types import Pcm
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .outputs import AudioOutput
    from .cues import Track

__all__ = ["Pacer", "DevicePacer", "ClockPacer", "SinkPacer", "make_pacer", "Taken"]

#: What one take hands the pacer: pieces of audio, each with its track.
Taken = List[Tuple["Track", Pcm]]

# A device write that returns later than this after it was called waited for room,
# so the fill read right after it is exact (PortAudio's reported fill lags otherwise).
_WRITE_BLOCKED = 0.002
# To read the device's fill exactly, the writer wakes this long before the device
# has room for a block, so that write waits for the room (a shorter lead lets late
# wake-ups under load make heard times jitter).
_WRITE_AHEAD = 0.008
# ... and does so at least once per this many blocks (about a second of blocks), to
# follow a device clock that drifts from ours or a device that skipped.
_RESYNC_BLOCKS = 10
_SINK_BLOCK_S = 0.1  # sinks take at most this much per write, so a cut is never far behind


class Pacer:
    """The interface the player's output thread drives.

    Attributes:
        block: samples taken per block.
        heard_rate: samples per second between a block being taken and each of its
            samples being heard; infinite where a sample written is a sample heard.
        holds_audio: the output buffers audio that can be dropped unheard (then the
            player keeps what it handed over, to queue again what a drop lost).
        can_be_lost: a failure or a stall of the output means the device is gone.
        cues_after_write: the cues of a block become due only once it is written.
    """

    block: int = 1
    heard_rate: float = float("inf")
    holds_audio = False
    can_be_lost = False
    cues_after_write = True  # a sample written is a sample heard: its cues wait for the write

    def __init__(self, output: "AudioOutput", rate: int) -> None:
        self.output = output
        self.rate = rate

    def wait(self, now: float) -> float:
        """Seconds until the next block may be taken (≤ 0: now). Player's lock held."""
        return 0.0

    def take_at(self, now: float) -> Tuple[float, float]:
        """(when the block is taken, seconds until its first sample is heard). Lock held."""
        return now, 0.0

    def idle(self) -> None:
        """Nothing is queued, or playback is paused. Lock held."""

    def write(self, taken: Taken, filled: int) -> None:
        """Hand a taken block to the output. No lock held; may block."""
        raise NotImplementedError

    def drop_buffer(self) -> None:
        """Drop what the output holds unheard (only where :attr:`holds_audio`). No lock held."""

    def reset(self) -> None:
        """The output was reopened: it holds nothing. No lock held."""

    ran_dry = True  # the output held nothing to play when the last write began

    tail_pending = False  # :meth:`drain` has audio to push out once the queue runs dry

    def drain(self) -> None:
        """The queue ran dry: push out what the output held back. No lock held."""


class SinkPacer(Pacer):
    """Files, functions, memory: written as fast as audio is queued."""

    def __init__(self, output: "AudioOutput", rate: int) -> None:
        super().__init__(output, rate)
        self.block = max(1, int(rate * _SINK_BLOCK_S))

    def write(self, taken: Taken, filled: int) -> None:
        for track, part in taken:
            if not track.cut:  # cut between the take and now: never handed over
                self.output.write(part)


class ClockPacer(Pacer):
    """A real-time clock with nothing behind it: a block each block period,
    silence-padded as a sound card would play it."""

    def __init__(self, output: "AudioOutput", rate: int) -> None:
        super().__init__(output, rate)
        self.block = max(1, output.block_frames)
        self.heard_rate = float(rate)
        self._next: Optional[float] = None  # when the next block is due; None while idle

    def wait(self, now: float) -> float:
        return 0.0 if self._next is None else self._next - now

    def take_at(self, now: float) -> Tuple[float, float]:
        if self._next is None:
            self._next = now
        when = self._next
        self._next += self.block / self.rate
        return when, 0.0

    def idle(self) -> None:
        self._next = None

    def write(self, taken: Taken, filled: int) -> None:
        block = np.zeros(self.block, dtype=np.int16)
        position = 0
        for track, part in taken:
            if not track.cut:  # cut since the take: it plays as silence
                block[position:position + len(part)] = part
            position += len(part)
        self.output.write(block)


class DevicePacer(Pacer):
    """A sound card: one block per wake-up, written just as the card has room.

    The fill PortAudio reports lags behind the device (through PulseAudio it moves
    in bursts, as the server asks for data), so it over-states what is left. Read
    right after a write that had to wait for room, it is exact; read after any
    other write, it is an upper bound. So the timeline (:attr:`played_at`) is set
    from the fill after a write that waited (or found the device run dry), and
    otherwise advanced by the length of each block written, never past what the
    device reports.

    Writes are timed half a block after the device has room, so they do not wait
    (and the fill stays over one and a half blocks, slack for a late wake-up).
    Only to read the fill exactly (once the device is full after running dry, then
    every :data:`_RESYNC_BLOCKS` blocks) is a write issued just before the room is due.
    """

    holds_audio = True
    can_be_lost = True
    cues_after_write = False  # heard later than written: cues are timed by the device's clock

    def __init__(self, output: "AudioOutput", rate: int) -> None:
        super().__init__(output, rate)
        self.block = max(1, output.block_frames)
        self.heard_rate = float(rate)
        self._until_sync = 0  # blocks to write before the next exact read
        self.played_at = 0.0  # what the device holds has played by then (monotonic)
        self.next_write_at = 0.0
        self._lag = 0.0  # what the output held back after the last write, in seconds

    def wait(self, now: float) -> float:
        return self.next_write_at - now

    def take_at(self, now: float) -> Tuple[float, float]:
        # What the output holds back comes out ahead of this block.
        return now, max(0.0, self.played_at - now) + self._lag

    def write(self, taken: Taken, filled: int) -> None:
        output = self.output
        before = time.monotonic()
        self.ran_dry = self.played_at < before
        output.write(taken[0][1] if len(taken) == 1 else np.concatenate([part for _, part in taken]))
        after = time.monotonic()
        lag, self._lag = self._lag, output.lag()
        self.tail_pending = self._lag > 0
        # What reached the device: the block, and what the output held back before
        # it, less what it holds back now.
        self.wrote(filled / self.rate + lag - self._lag, before, after, max(0, output.capacity - output.room()))

    def drain(self) -> None:
        self.output.drain()
        self.played_at = max(self.played_at, time.monotonic()) + self._lag
        self._lag, self.tail_pending = 0.0, False

    def drop_buffer(self) -> None:
        self.output.discard_buffered()
        self.reset()

    def reset(self) -> None:
        self.played_at = self.next_write_at = 0.0
        self._lag, self.tail_pending, self._until_sync = 0.0, False, 0

    def wrote(self, seconds: float, before: float, after: float, fill: int) -> None:
        """A write of ``seconds`` of audio was called at ``before`` and returned at
        ``after``, leaving the device reporting ``fill`` frames held."""
        reported = after + fill / self.rate
        if after - before > _WRITE_BLOCKED:  # it waited for room: the fill is exact
            self.played_at = reported
            self._until_sync = _RESYNC_BLOCKS
        elif self.played_at < before:  # the device ran dry: start from what it reports
            self.played_at = reported
            self._until_sync = 0
        else:
            self.played_at = min(self.played_at + seconds, reported)
            self._until_sync -= 1
        capacity = self.output.capacity
        room_at = self.played_at - (capacity - self.block) / self.rate  # room for a block from then
        if self._until_sync <= 0:
            self.next_write_at = room_at - _WRITE_AHEAD
        else:
            self.next_write_at = room_at + self.block / 2 / self.rate


_PACERS: Dict[str, Type[Pacer]] = {"device": DevicePacer, "clock": ClockPacer, "sink": SinkPacer}


def make_pacer(output: "AudioOutput", rate: int) -> Pacer:
    """The pacer for ``output``'s kind (an opened output: its block size is known)."""
    kind: Any = output.kind
    try:
        pacer = _PACERS[kind]
    except KeyError:
        raise ConfigurationError(f"unknown output kind {kind!r}; expected one of {', '.join(_PACERS)}") from None
    return pacer(output, rate)
