"""Speech through real PyAudio/PortAudio into the PulseAudio null sink, checked on
a recording of the sink's monitor: what a listener would actually have heard."""
from __future__ import annotations

import threading
import time
from typing import Callable, List, Tuple

import numpy as np
import pytest

from smallest_sync import AudioDeviceError, DeviceOutput, EndEvent, Speaker
from smallest_sync.emulator import Emulator, synthesize, tone_frequency

from .sink import SINK_RATE, SinkRecorder, find_segment

pytestmark = pytest.mark.device  # pause/resume and silence checked on a real sound server

LONG_A = " ".join(["alpha"] * 40)
SHORT_B = "bravo charlie delta"
# Words of ten different lengths: any second of the tone voice's audio of it occurs once.
DISTINCT = " ".join("x" * n for n in range(1, 11))


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


def test_pause_silences_the_sound_card_at_once_and_resume_loses_nothing(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sink_recorder: SinkRecorder) -> None:
    heard, ended = threading.Event(), threading.Event()
    words: List[Tuple[float, str]] = []
    speaker = make_speaker(output=None, sample_rate=SINK_RATE, on_start=lambda event: heard.set(),
                           on_word=lambda event: words.append((time.monotonic(), event.word)),
                           on_end=lambda event: ended.set())
    utterance = speaker.say(DISTINCT)
    assert heard.wait(10)
    assert sink_recorder.wait_until(time.monotonic() + 1.3)  # mid-sentence
    speaker.pause()
    paused_at = time.monotonic()
    assert sink_recorder.wait_until(paused_at + 0.6)
    assert not utterance.done
    resumed_at = time.monotonic()
    speaker.resume()
    assert utterance.wait(15) and not utterance.interrupted and ended.wait(5)
    recording = sink_recorder.stop(tail=0.3)

    served = sounding(emulator.served[0].pcm)
    start = find_segment(recording, served[:4800], exact=True)
    assert start is not None, "the start of the speech is not in the recording"
    heard_pcm = recording[start:]
    loud = np.flatnonzero(heard_pcm)
    longest = int(np.argmax(np.diff(loud)))  # the pause: far longer than the voice's own gaps
    stop, restart = int(loud[longest]) + 1, int(loud[longest + 1])
    assert restart - stop >= 0.5 * SINK_RATE
    # Up to the pause: exactly the speech, silenced at once (not after the three blocks
    # the device had buffered).
    assert np.array_equal(heard_pcm[:stop], served[:stop])
    assert start + stop <= sink_recorder.index_at(paused_at) + int(0.05 * SINK_RATE)
    # After it: exactly the rest, from where the sound stopped (at most a few ms again), none skipped.
    resumed_from = find_segment(served, heard_pcm[restart:restart + SINK_RATE], exact=True)
    assert resumed_from is not None, "what plays after resume() is not a piece of the speech"
    assert resumed_from <= stop or not served[stop:resumed_from].any(), "resume() skipped some speech"
    assert stop - resumed_from <= 0.03 * SINK_RATE, "resume() went back too far"
    assert np.array_equal(heard_pcm[restart:restart + len(served) - resumed_from], served[resumed_from:])
    # Word events follow the sound: none while paused, every word once, in order.
    assert [word for _, word in words] == DISTINCT.split()
    assert not [word for at, word in words if paused_at + 0.05 < at < resumed_at]


class _CountingDevice(DeviceOutput):
    """The default device, signalling once more than ``samples`` have been written to it."""

    def __init__(self, samples: int) -> None:
        super().__init__()
        self.passed = threading.Event()
        self._left = samples

    def write(self, pcm: np.ndarray) -> None:
        super().write(pcm)
        self._left -= len(pcm)
        if self._left < 0:
            self.passed.set()


def test_cancelling_the_utterance_playing_keeps_the_next_one_whole(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sink_recorder: SinkRecorder) -> None:
    # Cancel the first utterance once the start of the second is in the device's
    # buffer behind its tail: dropping that buffer must not take the second's start with it.
    first_pcm, _ = synthesize(SHORT_B, sample_rate=SINK_RATE)
    lead = len(first_pcm) - len(sounding(first_pcm))
    output = _CountingDevice(len(first_pcm) + lead + int(0.02 * SINK_RATE))
    speaker = make_speaker(output=output, sample_rate=SINK_RATE)
    first, second = speaker.say(SHORT_B), speaker.say("charlie delta echo")
    assert output.passed.wait(10)
    first.cancel()
    assert second.wait(10) and not second.interrupted
    recording = sink_recorder.stop(tail=0.3)
    assert first.interrupted, "the first utterance was still in the device's buffer"
    assert emulator.served[0].text == SHORT_B and np.array_equal(emulator.served[0].pcm, first_pcm)
    assert find_segment(recording, sounding(emulator.served[1].pcm), exact=True) is not None, \
        "the second utterance is not heard whole"


def test_a_pause_as_speech_starts_replays_the_start_with_one_start_event(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sink_recorder: SinkRecorder) -> None:
    # Paused from the start handler: the first samples, just heard, are queued again;
    # the utterance is still heard whole and starts once.
    starts: List[float] = []
    paused, ended = threading.Event(), threading.Event()

    def on_start(event: object) -> None:
        starts.append(time.monotonic())
        if not paused.is_set():
            speaker.pause()
            paused.set()

    speaker = make_speaker(output=None, sample_rate=SINK_RATE, on_start=on_start, on_end=lambda event: ended.set())
    utterance = speaker.say(SHORT_B)
    assert paused.wait(10)
    assert sink_recorder.wait_until(time.monotonic() + 0.3)
    speaker.resume()
    assert utterance.wait(10) and not utterance.interrupted and ended.wait(5)
    recording = sink_recorder.stop(tail=0.3)
    assert len(starts) == 1
    assert find_segment(recording, sounding(emulator.served[0].pcm), exact=True) is not None


def test_a_pause_as_speech_ends_ends_it_once(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sink_recorder: SinkRecorder) -> None:
    # Paused from the end handler: the last samples, just heard, are queued again, but
    # the end has been heard and must not be reported twice; the next utterance is whole.
    ends: List[str] = []
    paused = threading.Event()

    def on_end(event: EndEvent) -> None:
        ends.append(event.utterance.text)
        if not paused.is_set():
            speaker.pause()
            paused.set()

    speaker = make_speaker(output=None, sample_rate=SINK_RATE, on_end=on_end)
    first = speaker.say(SHORT_B)
    assert paused.wait(10) and first.done
    assert sink_recorder.wait_until(time.monotonic() + 0.3)
    speaker.resume()
    second = speaker.speak("charlie delta echo")
    assert not second.interrupted
    recording = sink_recorder.stop(tail=0.3)
    assert ends == [SHORT_B, "charlie delta echo"]
    assert find_segment(recording, sounding(emulator.served[1].pcm), exact=True) is not None
