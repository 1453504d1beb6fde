"""A sound server that restarts or goes away: the Speaker heals itself.

These stop and start the test's own sound server (scripts/pulse.sh, or
scripts/pipewire.sh on the PipeWire pass), so they leave it running as they found it.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from smallest_sync import AudioDeviceError, DeviceEvent, Speaker
from smallest_sync.emulator import Emulator

from .conftest import heard_whole
from .sink import SINK_RATE, SinkRecorder, find_segment, require_sink

pytestmark = [pytest.mark.device, pytest.mark.timeout(90)]
SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _server(action: str) -> None:
    env = dict(os.environ)
    script = "pulse.sh"
    if os.environ.get("SMALLEST_SYNC_SOUND_SERVER") == "pipewire":
        script = "pipewire.sh"  # the pass's own daemons: their directory holds the runtime one
        env["SMALLEST_PIPEWIRE_DIR"] = os.path.dirname(os.environ["PIPEWIRE_RUNTIME_DIR"].rstrip("/"))
    subprocess.run([str(SCRIPTS / script), action], env=env, check=True, timeout=60, capture_output=True)


@pytest.fixture
def sound_server() -> Iterator[Callable[[str], None]]:
    """Stop or start the test's sound server; it is running again after the test."""
    require_sink()
    try:
        yield _server
    finally:
        _server("start")


def test_a_sound_server_restarted_between_two_speaks_is_heard_again(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sound_server: Callable[[str], None]) -> None:
    events: List[DeviceEvent] = []
    speaker = make_speaker(on_device=events.append)
    assert heard_whole(speaker.speak("Before the restart."))
    sound_server("stop")
    sound_server("start")
    with SinkRecorder(SINK_RATE).start() as recorder:
        assert heard_whole(speaker.speak("After the restart."))
        recording = recorder.stop(tail=0.2)
    assert find_segment(recording, emulator.served[-1].pcm) is not None, "the second utterance was not heard"
    assert speaker.wait_idle(5)
    assert [event.state for event in events] == ["lost", "back"]


def test_speech_waits_for_a_sound_server_that_is_gone_then_fails_and_the_next_works(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sound_server: Callable[[str], None]) -> None:
    speaker = make_speaker(timeout=1.0)
    assert heard_whole(speaker.speak("Before it goes."))
    sound_server("stop")
    began = time.monotonic()
    with pytest.raises(AudioDeviceError):
        speaker.speak("Nobody can hear this.")
    assert time.monotonic() - began < 3.0  # the timeout (1 s), checked four times a timeout
    sound_server("start")
    assert heard_whole(speaker.speak("It is back, and so am I."))
