"""Speech through real PyAudio/PortAudio into the PulseAudio null sink, checked on
a recording of the sink's monitor: what a listener would actually have heard."""
from __future__ import annotations

import threading
import time
from typing import Callable, List

import numpy as np
import pytest

from smallest_sync import AudioDeviceError, Speaker
from smallest_sync.emulator import Emulator, tone_frequency

from .sink import SINK_RATE, SinkRecorder, find_segment

LONG_A = " ".join(["alpha"] * 40)
SHORT_B = "bravo charlie delta"


def sounding(pcm: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(pcm)
    return pcm[loud[0]:] if len(loud) else pcm


def test_speech_reaches_the_sound_card_sample_for_sample(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sink_recorder: SinkRecorder) -> None:
    speaker = make_speaker(output=None, sample_rate=SINK_RATE)
    utterance = speaker.speak("Heard through PulseAudio.")
    recording = sink_recorder.stop(tail=0.3)
    served = emulator.served[0].pcm
    start = find_segment(recording, sounding(served), exact=True)
    assert start is not None, "the served audio is not in the recording"
    assert utterance.done and not utterance.interrupted


def test_interrupt_leaves_nothing_of_the_old_utterance_in_the_recording(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sink_recorder: SinkRecorder) -> None:
    assert tone_frequency(LONG_A) != tone_frequency(SHORT_B)
    emulator.config.realtime_factor = 2.0  # still sending when interrupted
    heard = threading.Event()
    speaker = make_speaker(output=None, sample_rate=SINK_RATE, on_start=lambda event: heard.set())
    interrupted_at: List[float] = []

    def barge_in() -> None:
        assert heard.wait(10)
        assert sink_recorder.wait_until(time.monotonic() + 0.5)  # half a second of it is heard
        speaker.interrupt()
        interrupted_at.append(time.monotonic())

    helper = threading.Thread(target=barge_in)
    helper.start()
    first = speaker.speak(LONG_A)
    helper.join(10)
    second = speaker.speak(SHORT_B)
    recording = sink_recorder.stop(tail=0.3)

    assert first.interrupted and not second.interrupted
    a, b = (sounding(served.pcm) for served in emulator.served)
    a_at = find_segment(recording, a[:4800], exact=True)
    b_at = find_segment(recording, b, exact=True)
    assert a_at is not None and b_at is not None, "both utterances must be in the recording"
    # What was heard of A is an exact prefix of A, then silence until B, B whole, then silence.
    heard_a = recording[a_at:b_at]
    cut = len(np.trim_zeros(heard_a, "b"))
    assert np.array_equal(heard_a[:cut], a[:cut])
    assert not recording[a_at + cut:b_at].any()
    assert not recording[b_at + len(b):].any()
    assert not recording[:a_at].any()
    # A stopped within a device buffer of interrupt() returning, far before its end.
    stop_index = sink_recorder.index_at(interrupted_at[0])
    assert a_at + cut <= stop_index + int(0.15 * SINK_RATE)
    assert cut < len(a) / 4


def test_unknown_devices_are_clear_errors(emulator: Emulator) -> None:
    for device in (999, "no such device anywhere"):
        with pytest.raises(AudioDeviceError, match="no output device|matches no"):
            Speaker("sk_test", base_url=emulator.base_url, output=device)


def test_speech_after_a_quiet_spell_is_heard_whole(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sink_recorder: SinkRecorder) -> None:
    # After a quiet spell the device stream has run dry (underrun): the next
    # utterance goes into an empty buffer, and its start must not be clipped.
    speaker = make_speaker(output=None, sample_rate=SINK_RATE)
    speaker.speak("Before the pause.")
    assert sink_recorder.wait_until(time.monotonic() + 1.5)
    speaker.speak("After the pause.")
    recording = sink_recorder.stop(tail=0.3)
    for served in emulator.served:
        assert find_segment(recording, sounding(served.pcm), exact=True) is not None, served.text
