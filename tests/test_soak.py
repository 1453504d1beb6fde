"""Many threads hammering one Speaker: no deadlock, nothing escapes a thread, nothing
stale is played, and every thread is gone after close().

SOAK_SECONDS (environment) lengthens it; the suite runs a short pass.
"""
from __future__ import annotations

import os
import random
import threading
import time
from typing import Callable, List, Tuple

import pytest

from smallest_sync import MemoryOutput, SmallestError, Speaker, SpeakerClosedError, Utterance
from smallest_sync.emulator import Emulator

SECONDS = float(os.environ.get("SOAK_SECONDS", "6"))


@pytest.mark.timeout(SECONDS + 120)
def test_soak_of_speak_say_interrupt_update_cancel_close(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.realtime_factor = 50.0  # audio keeps arriving while others interrupt
    speaker = make_speaker(output=MemoryOutput(), timeout=5)
    handles: List[Utterance] = []
    frozen: List[Tuple[Utterance, int]] = []  # interrupted utterances and what they had played by then
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
                        speaker.interrupt()
                        with lock:  # whatever is interrupted now must never play another sample
                            frozen.extend((h, h.track.taken) for h in handles if h.interrupted)
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
    # Nothing interrupted took another sample after the interrupt() that ended it returned.
    assert all(handle.track.taken == taken for handle, taken in frozen)
    closer = threading.Thread(target=speaker.close)
    closer.start()
    closer.join(30)
    assert not closer.is_alive()
    assert all(h.wait(5) for h in handles), "every handle ends once the Speaker is closed"
