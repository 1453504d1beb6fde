"""Any public method may be called from any callback or output.

Each is called once from inside an output's ``write`` (the ``smallest-audio``
thread) and from the ``on_audio``, ``on_start``, ``on_word`` and ``on_end``
callbacks (``smallest-events``): it must return promptly, and the Speaker must go
on working afterwards. (Before the player stopped holding a lock around
``output.write``, ``interrupt()`` or ``close()`` from an output hung the Speaker.)
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import pytest

from smallest_sync import Speaker, Utterance
from smallest_sync.emulator import Emulator

from .conftest import heard_whole

PLACES = ["output", "on_audio", "on_start", "on_word", "on_end"]


def _pause_and_resume(speaker: Speaker, utterance: Utterance) -> None:
    speaker.pause()
    speaker.resume()


METHODS: Dict[str, Callable[[Speaker, Utterance], Any]] = {
    "interrupt": lambda speaker, utterance: speaker.interrupt(),
    "close": lambda speaker, utterance: speaker.close(),
    "say": lambda speaker, utterance: speaker.say("Said from inside."),
    "pause_resume": _pause_and_resume,
    "update": lambda speaker, utterance: speaker.update(speed=1.2),
    "cancel": lambda speaker, utterance: utterance.cancel(),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("place", PLACES)
def test_a_public_method_called_from_inside_returns_promptly_and_the_speaker_goes_on(
        emulator: Emulator, make_speaker: Callable[..., Speaker], place: str, method: str) -> None:
    called = threading.Event()
    took: List[float] = []
    errors: List[BaseException] = []
    speaker: Optional[Speaker] = None
    first: Optional[Utterance] = None

    def call_once(*_: Any) -> None:
        if called.is_set() or speaker is None or first is None:
            return
        started = time.monotonic()
        try:
            METHODS[method](speaker, first)
        except BaseException as exc:
            errors.append(exc)
        took.append(time.monotonic() - started)
        called.set()

    written: List[np.ndarray] = []

    def output(pcm: np.ndarray) -> None:
        written.append(pcm)
        if place == "output":
            call_once()

    callbacks = {} if place == "output" else {place: call_once}
    speaker = make_speaker(output=output, **callbacks)
    first = speaker.say("Calling back from inside the library.")
    assert called.wait(10), f"{place} was never called"
    assert not errors, errors
    assert took[0] < 1.0, f"{method}() from {place} took {took[0]:.2f} s"
    if method == "close":
        assert speaker.closed and first.wait(5)
        return
    assert first.wait(10)
    assert heard_whole(speaker.speak("The Speaker still works.")), "the Speaker stopped working"
    assert speaker.wait_idle(10)
