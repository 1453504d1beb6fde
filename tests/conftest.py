"""Shared fixtures: a real emulator on loopback, speakers that are always closed,
and a guard that fails any test leaving a library thread behind."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator, List, Tuple

import numpy as np
import pytest

from smallest_sync import NullOutput, Speaker, Utterance
from smallest_sync.emulator import Emulator, EmulatorConfig

from .sink import sink_recorder  # noqa: F401  (fixture, shared by every test module)

API_KEY = "sk_test_0123456789abcdef"
#: A request lost with its socket before any audio is sent at most this many times
#: in all (README: "sent again, twice at most").
MAX_SENDS = 3


def heard_whole(utterance: Utterance) -> bool:
    """It ended normally and every sample of it that arrived was played."""
    counts = utterance.track
    return utterance.state == "done" and counts.fed > 0 and counts.taken == counts.fed


def _library_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("smallest-") and t.name != "smallest-emulator"]


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """Every test: the library's threads are gone once its speakers are closed."""
    before = set(_library_threads())
    yield
    leaked = [t for t in _library_threads() if t not in before]
    for thread in leaked:  # a reader may still be finishing its last frame
        thread.join(2.0)
    assert not [t.name for t in leaked if t.is_alive()], "threads left running after close()"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """The emulator with the deterministic tone voice, sending as fast as it can."""
    with Emulator(EmulatorConfig(realtime_factor=0, first_chunk_delay=0.0)) as emu:
        yield emu


@pytest.fixture
def make_speaker(emulator: Emulator) -> Iterator[Callable[..., Speaker]]:
    """Build Speakers against ``emulator``; all are closed after the test."""
    speakers: List[Speaker] = []

    def make(**options: Any) -> Speaker:
        options.setdefault("base_url", emulator.base_url)
        options.setdefault("timeout", 5.0)
        # One socket, so tests can count connections; test_standby.py covers the second.
        options.setdefault("standby", False)
        speaker = Speaker(options.pop("api_key", API_KEY), **options)
        speakers.append(speaker)
        return speaker

    yield make
    for speaker in speakers:
        speaker.close()


class RecordingOutput(NullOutput):
    """A real-time silent output that remembers each block and when it started playing."""

    def __init__(self) -> None:
        super().__init__(realtime=True)
        self._lock = threading.Condition()
        self.blocks: List[Tuple[float, np.ndarray]] = []
        self._sounding = 0  # blocks with any sound in them

    def write(self, pcm: np.ndarray) -> None:
        with self._lock:
            self.blocks.append((time.monotonic(), pcm.copy()))
            self._sounding += bool(pcm.any())
            self._lock.notify_all()

    def wait_sounding(self, blocks: int, timeout: float) -> bool:
        """Wait until ``blocks`` blocks with sound have played."""
        with self._lock:
            return self._lock.wait_for(lambda: self._sounding >= blocks, timeout)

    def played_after(self, moment: float) -> np.ndarray:
        with self._lock:
            later = [pcm for when, pcm in self.blocks if when >= moment]
        return np.concatenate(later) if later else np.zeros(0, np.int16)

    def samples(self) -> np.ndarray:
        with self._lock:
            return np.concatenate([pcm for _, pcm in self.blocks]) if self.blocks else np.zeros(0, np.int16)


def strip_silence(pcm: np.ndarray) -> np.ndarray:
    """``pcm`` without the silence a real-time output pads around speech."""
    loud = np.flatnonzero(pcm)
    return pcm[loud[0]:loud[-1] + 1] if len(loud) else pcm[:0]


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """Tests that check what a sound server heard are device tests: scripts/test runs
    them again on PipeWire (the samples' own runs excepted: they test the samples)."""
    for item in items:
        if "sink_recorder" in getattr(item, "fixturenames", ()) and not item.module.__name__.endswith(
                ("test_samples_cli", "test_samples_gui")):
            item.add_marker(pytest.mark.device)
