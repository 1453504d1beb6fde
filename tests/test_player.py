"""The Player on its own, without a sound server: a simulated sound card, and the
pacers' arithmetic on made-up times.

``FakeCard`` plays what it is given at its rate from the moment it has it, like a
card behind PortAudio's blocking API: ``write`` waits for room, ``room()`` is
exact, and ``discard_buffered`` drops what has not played yet. It keeps every
sample it played with the time it played, so the assertions on *what* was heard
are exact; those on *when* allow for thread wake-ups.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pytest

from smallest_sync import CallbackOutput
from smallest_sync.playback.cues import Track
from smallest_sync.playback.outputs import AudioOutput, NullOutput
from smallest_sync.playback.pacers import ClockPacer, DevicePacer, SinkPacer
from smallest_sync.playback.player import Player

RATE = 24000
MS = RATE // 1000


class FakeCard(AudioOutput):
    """A sound card simulated on the monotonic clock (see the module docstring)."""

    kind = "device"

    def __init__(self, *, block_ms: int = 20, periods: int = 3) -> None:
        self._block_ms, self._periods = block_ms, periods
        self._cond = threading.Condition()
        self._segments: List[Tuple[float, np.ndarray]] = []  # (when it starts playing, samples)
        self._end = 0.0  # when the last sample written has played
        self.discards: List[float] = []

    def open(self, sample_rate: int) -> None:
        self.rate = sample_rate
        self.block_frames = sample_rate * self._block_ms // 1000
        self.capacity = self.block_frames * self._periods

    def _fill(self, now: float) -> int:
        return max(0, round((self._end - now) * self.rate))

    def room(self) -> int:
        with self._cond:
            return self.capacity - self._fill(time.monotonic())

    def write(self, pcm: np.ndarray) -> None:
        with self._cond:
            while True:  # a blocking write: wait for room, as the card frees it
                now = time.monotonic()
                missing = len(pcm) - (self.capacity - self._fill(now))
                if missing <= 0:
                    break
                self._cond.wait(missing / self.rate)
            start = max(now, self._end)
            self._segments.append((start, pcm.copy()))
            self._end = start + len(pcm) / self.rate
            self._cond.notify_all()

    def discard_buffered(self) -> None:
        with self._cond:
            now = time.monotonic()
            kept = []
            for start, pcm in self._segments:
                played = min(len(pcm), max(0, int((now - start) * self.rate)))
                if played:
                    kept.append((start, pcm[:played]))
            self._segments = kept
            self._end = min(self._end, now)
            self.discards.append(now)
            self._cond.notify_all()

    def latency(self) -> float:
        return self.capacity / self.rate

    def heard(self) -> Tuple[np.ndarray, np.ndarray]:
        """(samples, the time each starts playing) of everything played or to play."""
        with self._cond:
            segments = list(self._segments)
        if not segments:
            return np.zeros(0, np.int16), np.zeros(0)
        samples = np.concatenate([pcm for _, pcm in segments])
        times = np.concatenate([start + np.arange(len(pcm)) / self.rate for start, pcm in segments])
        return samples, times


class Cues:
    """The player's listener: every cue heard, and a way to wait for one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.heard: List[Tuple[str, Any, float, float]] = []  # (kind, payload, heard_at, fired_at)

    def __call__(self, track: Track, kind: str, payload: Any, heard_at: float) -> None:
        with self._cond:
            self.heard.append((kind, payload, heard_at, time.monotonic()))
            self._cond.notify_all()

    def wait_for(self, kind: str, payload: Any = None, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: any(k == kind and (payload is None or p == payload) for k, p, _, _ in self.heard), timeout)

    def wait_count(self, kind: str, count: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: sum(k == kind for k, _, _, _ in self.heard) >= count, timeout)

    def kinds(self) -> List[Tuple[str, Any]]:
        with self._cond:
            return [(kind, payload) for kind, payload, _, _ in self.heard]


def ramp(count: int, offset: int = 0) -> np.ndarray:
    """``count`` samples that are all different (offset+1, offset+2, ...), so any
    repeat or gap can be found."""
    assert count < 65536 and -32768 <= offset + 1 and offset + count <= 32767
    return (np.arange(count, dtype=np.int64) + offset + 1).astype(np.int16)


@pytest.fixture
def card() -> FakeCard:
    return FakeCard()


@pytest.fixture
def cues() -> Cues:
    return Cues()


@pytest.fixture
def player(card: FakeCard, cues: Cues) -> Iterator[Player]:
    failures: List[BaseException] = []
    made = Player(card, RATE, listener=cues, on_failure=failures.append)
    yield made
    made.close()
    assert not failures


def _feed(player: Player, label: str, pcm: np.ndarray, *, words: Sequence[int] = (), chunk: int = 30 * MS) -> Track:
    """A whole track, fed in chunks as the reader would, then finished; word cue N at
    sample ``words[N]``."""
    track = Track(label)
    for index, position in enumerate(words):
        player.mark_at(track, position, "word", index)
    for start in range(0, len(pcm), chunk):
        player.feed(track, pcm[start:start + chunk])
    player.finish(track)
    return track


def test_what_is_fed_is_heard_once_in_order_with_start_and_end_cues(player: Player, card: FakeCard,
                                                                     cues: Cues) -> None:
    first, second = ramp(400 * MS, -32000), ramp(300 * MS, 10000)
    a, b = _feed(player, "a", first), _feed(player, "b", second)
    assert cues.wait_count("end", 2)
    heard, _ = card.heard()
    assert np.array_equal(heard, np.concatenate([first, second]))  # no gap between the tracks either
    assert [kind for kind, _ in cues.kinds()] == ["start", "end", "start", "end"]
    assert a.counts.taken == len(first) and b.counts.taken == len(second)


def test_a_word_cue_fires_when_its_sample_is_heard(player: Player, card: FakeCard, cues: Cues) -> None:
    pcm = ramp(600 * MS, -20000)
    positions = [0, 100 * MS, 250 * MS, 590 * MS]
    _feed(player, "words", pcm, words=positions)
    assert cues.wait_for("end")
    heard, times = card.heard()
    fired = {payload: (heard_at, fired_at) for kind, payload, heard_at, fired_at in cues.heard if kind == "word"}
    assert sorted(fired) == list(range(len(positions)))
    for index, position in enumerate(positions):
        played_at = times[np.flatnonzero(heard == pcm[position])[0]]
        heard_at, fired_at = fired[index]
        assert abs(heard_at - played_at) < 0.005, (index, heard_at - played_at)  # the player's estimate
        assert abs(fired_at - played_at) < 0.030, (index, fired_at - played_at)  # and when it fired


def test_cut_silences_the_card_at_once_and_the_next_track_is_heard_whole(player: Player, card: FakeCard,
                                                                          cues: Cues) -> None:
    doomed, kept = ramp(1300 * MS, -32000), ramp(500 * MS, 10000)
    a, _ = _feed(player, "a", doomed), _feed(player, "b", kept)
    assert cues.wait_for("start")
    with card._cond:  # some of a is in the card's buffer
        assert card._cond.wait_for(lambda: sum(len(p) for _, p in card._segments) > 200 * MS, 5)
    player.cut([a])
    cut_at = time.monotonic()
    assert cues.wait_count("end", 1)
    heard, times = card.heard()
    of_a = np.isin(heard, doomed)
    assert card.discards, "the card's buffer was not dropped"
    assert not np.any(times[of_a] > cut_at + 0.010), "the cut track played on after cut()"
    assert np.array_equal(heard[~of_a], kept)  # what the drop took back of b plays, once
    assert [kind for kind, _ in cues.kinds()].count("end") == 1  # a's end never fires


def test_pause_stops_the_sound_and_resume_goes_on_from_there(player: Player, card: FakeCard,
                                                             cues: Cues) -> None:
    pcm = ramp(1500 * MS, -32000)
    _feed(player, "paused", pcm, words=range(0, len(pcm), 100 * MS))
    assert cues.wait_for("word", 3)
    player.pause()
    paused_at = time.monotonic()
    with card._cond:
        assert card._cond.wait_for(lambda: bool(card.discards), 2)
    heard_before, times = card.heard()
    assert not np.any(times > paused_at + 0.010), "sound went on after pause()"
    words_at_pause = cues.kinds()
    threading.Event().wait(0.3)  # three words' time: none may fire while paused
    assert cues.kinds() == words_at_pause
    player.resume()
    assert cues.wait_for("end")
    heard, _ = card.heard()
    seam = len(heard_before)
    resumed_at = int(np.flatnonzero(pcm == heard[seam])[0])
    repeated = seam - resumed_at
    assert 0 <= repeated <= 30 * MS, repeated  # nothing skipped, little repeated
    assert np.array_equal(heard[:seam], pcm[:seam]) and np.array_equal(heard[seam:], pcm[resumed_at:])
    words = [p for k, p in cues.kinds() if k == "word"]
    assert words == sorted(set(words)) == list(range(15))  # each word once, in order


def test_an_output_may_call_back_into_the_player_from_write(cues: Cues) -> None:
    calls: List[str] = []
    player: Optional[Player] = None
    first = Track("first")

    def write(pcm: np.ndarray) -> None:
        assert player is not None
        if not calls:
            started = time.monotonic()
            player.cut([first])  # from the output's own thread: must not wait for itself
            player.pause()
            player.resume()
            calls.append(f"{time.monotonic() - started:.3f}")

    player = Player(CallbackOutput(write), RATE, listener=cues, on_failure=lambda exc: None)
    try:
        player.feed(first, ramp(500 * MS))
        player.finish(first)
        second = Track("second")
        player.feed(second, ramp(100 * MS))
        player.finish(second)
        assert cues.wait_for("end", timeout=5)
        assert calls and float(calls[0]) < 0.1
    finally:
        player.close()


# ----- the pacers, on made-up times ---------------------------------------------------
class _Device(NullOutput):
    kind = "device"
    capacity = 300
    block_frames = 100


def test_device_timeline_reads_the_fill_exactly_after_a_write_that_waited() -> None:
    pacer = DevicePacer(_Device(), 1000)  # 1000 Hz: one frame a millisecond
    pacer.wrote(0.1, before=10.0, after=10.05, fill=300)  # waited 50 ms for room: fill exact
    assert pacer.played_at == pytest.approx(10.35)
    # The next block is due half a block after the card has room for it.
    assert pacer.next_write_at == pytest.approx(10.35 - 0.2 + 0.05)


def test_device_timeline_advances_by_blocks_and_never_past_what_the_card_reports() -> None:
    pacer = DevicePacer(_Device(), 1000)
    pacer.wrote(0.1, before=10.0, after=10.05, fill=300)  # played_at 10.35
    pacer.wrote(0.1, before=10.20, after=10.2001, fill=300)  # a lagging report: over-states
    assert pacer.played_at == pytest.approx(10.45)  # advanced by the block, not by the report
    pacer.wrote(0.1, before=10.30, after=10.3001, fill=100)  # the report is lower: it wins
    assert pacer.played_at == pytest.approx(10.4001)


def test_device_timeline_restarts_from_the_report_after_running_dry() -> None:
    pacer = DevicePacer(_Device(), 1000)
    pacer.wrote(0.1, before=10.0, after=10.05, fill=300)
    pacer.wrote(0.1, before=20.0, after=20.0001, fill=100)  # long after it all played
    assert pacer.played_at == pytest.approx(20.1001)
    assert pacer.next_write_at < pacer.played_at - 0.2  # an exact read comes next: written early


def test_sink_and_clock_pacers_never_write_audio_cut_after_it_was_taken() -> None:
    written: List[np.ndarray] = []
    kept, cut = Track("kept"), Track("cut")
    cut.cut = True
    SinkPacer(CallbackOutput(written.append), 1000).write([(kept, ramp(10)), (cut, ramp(10, 100))], 20)
    assert len(written) == 1 and np.array_equal(written[0], ramp(10))

    class Recording(NullOutput):
        def write(self, pcm: np.ndarray) -> None:
            written.append(pcm)

    written.clear()
    output = Recording(block_ms=30)
    output.open(1000)
    ClockPacer(output, 1000).write([(cut, ramp(10, 100)), (kept, ramp(10))], 20)
    assert len(written) == 1 and np.array_equal(written[0], np.concatenate([np.zeros(10), ramp(10), np.zeros(10)]))


def test_clock_pacer_takes_a_block_per_period_and_restarts_after_idling() -> None:
    output = NullOutput(block_ms=20)
    output.open(1000)
    pacer = ClockPacer(output, 1000)
    assert pacer.wait(5.0) == 0  # idle: the first block goes at once
    assert pacer.take_at(5.0) == (5.0, 0.0)
    assert pacer.wait(5.0) == pytest.approx(0.02)
    assert pacer.take_at(5.03) == (pytest.approx(5.02), 0.0)  # late: catches up, one block at a time
    pacer.idle()
    assert pacer.take_at(9.0) == (9.0, 0.0)
