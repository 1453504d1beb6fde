"""Many threads hammering one Speaker: no deadlock, nothing escapes a thread, nothing
stale is played, and every thread is gone after close().

"Nothing stale" is checked on what the output received: each block written is
traced to the utterance whose audio it is (a written block is a view of the decoded
chunk that ``on_audio`` reported with its utterance), and no block written after an
``interrupt()`` returned may belong to an utterance it interrupted.

SOAK_SECONDS (environment) lengthens it; the suite runs a short pass.
"""
from __future__ import annotations

import os
import random
import threading
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import pytest

from smallest_sync import AudioEvent, AudioOutput, MemoryOutput, SmallestError, Speaker, SpeakerClosedError, Utterance
from smallest_sync.emulator import Emulator

SECONDS = float(os.environ.get("SOAK_SECONDS", "6"))


class TracedOutput(AudioOutput):
    """Keeps every block written as it came (a view of a decoded chunk), in order.

    Each write takes a few milliseconds, as a slow output would: it writes slower
    than the emulator sends, so audio waits in the player when interrupts come.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slow = threading.Event()  # never set: its wait is the write's duration
        self.blocks: List[np.ndarray] = []

    def write(self, pcm: np.ndarray) -> None:
        with self._lock:
            self.blocks.append(pcm)
        self._slow.wait(0.004)

    @property
    def started(self) -> int:
        """Writes begun so far: a write begun later has an index at least this."""
        with self._lock:
            return len(self.blocks)


class Chunks:
    """on_audio: which utterance each decoded chunk belongs to."""

    def __init__(self) -> None:
        self.owner: Dict[int, int] = {}  # id(chunk) -> utterance serial
        self._kept: List[np.ndarray] = []  # keeps the chunks alive, so no id is reused

    def __call__(self, event: AudioEvent) -> None:
        self._kept.append(event.samples)
        self.owner[id(event.samples)] = event.utterance.serial


def stale_writes(output: TracedOutput, chunks: Chunks, forbidden_from: Dict[int, int]) -> List[Tuple[int, int]]:
    """(write index, utterance) of each block written at or after the first write
    that an interrupt() of that utterance had forbidden."""
    stale = []
    for index, block in enumerate(output.blocks):
        chunk = block.base if block.base is not None else block
        serial = chunks.owner.get(id(chunk))
        assert serial is not None, "a block written that is no decoded chunk's audio"
        if index >= forbidden_from.get(serial, len(output.blocks)):
            stale.append((index, serial))
    return stale


@pytest.mark.timeout(SECONDS + 120)
def test_soak_of_speak_say_interrupt_update_cancel_close(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.realtime_factor = 50.0  # audio keeps arriving while others interrupt
    output, chunks = TracedOutput(), Chunks()
    speaker = make_speaker(output=output, on_audio=chunks, timeout=5)
    handles: List[Utterance] = []
    forbidden_from: Dict[int, int] = {}  # utterance serial -> first write index it may not reach
    errors: List[BaseException] = []
    counts = {"calls": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while time.monotonic() < deadline:
                action = rng.random()
                try:
                    if action < 0.45:
                        handle = speaker.say(f"worker {seed} line {rng.randrange(1000)}.")
                        with lock:
                            handles.append(handle)
                    elif action < 0.6:
                        with lock:
                            pending = [h for h in handles if not h.done]
                        speaker.interrupt()
                        # Each of these was cut by this call or by one that ended before it
                        # began: no write begun from now on may carry its audio.
                        first = output.started
                        with lock:
                            for h in pending:
                                if h.interrupted:
                                    forbidden_from[h.serial] = min(first, forbidden_from.get(h.serial, first))
                    elif action < 0.75:
                        speaker.update(speed=rng.choice([0.8, 1.0, 1.5]), voice=rng.choice(["meher", "liam"]))
                    elif action < 0.85:
                        with lock:
                            victim = rng.choice(handles) if handles else None
                        if victim is not None:
                            victim.cancel()
                    else:
                        try:
                            speaker.speak(f"blocking {seed}.")
                        except SmallestError as exc:  # a timeout under load is a result, not a bug
                            if not isinstance(exc, SpeakerClosedError):
                                raise
                    with lock:
                        counts["calls"] += 1
                except SpeakerClosedError:
                    return
        except BaseException as exc:  # anything else is a bug
            errors.append(exc)

    def churn() -> None:
        """Whole Speakers born and closed while they speak: close() under fire."""
        rng = random.Random(99)
        try:
            while time.monotonic() < deadline:
                short = Speaker("sk_soak", base_url=emulator.base_url, output=MemoryOutput(), timeout=5)
                handle = short.say(f"short lived {rng.randrange(100)}.")
                if rng.random() < 0.5:
                    short.interrupt()
                short.close()
                assert handle.wait(5)
                with lock:
                    counts["calls"] += 4
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,), name=f"soak-{seed}") for seed in range(4)]
    threads.append(threading.Thread(target=churn, name="soak-churn"))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 30)
    assert not [t.name for t in threads if t.is_alive()], "deadlock: a caller never returned"
    assert not errors, errors
    assert counts["calls"] > 1000, counts
    closer = threading.Thread(target=speaker.close)
    closer.start()
    closer.join(30)
    assert not closer.is_alive()
    assert all(h.wait(5) for h in handles), "every handle ends once the Speaker is closed"
    # close() ran every callback queued: each chunk's utterance is known now.
    assert len(forbidden_from) > 20 and len(output.blocks) > 100, (len(forbidden_from), len(output.blocks))
    assert not stale_writes(output, chunks, forbidden_from), "audio of an interrupted utterance written after interrupt()"
