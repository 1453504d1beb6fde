"""Word events: timed on the utterance's own timeline, fired when the word is heard."""
from __future__ import annotations

import threading
import time
from typing import Callable, List, Tuple

import numpy as np
import pytest

from smallest_sync import EndEvent, MemoryOutput, Speaker, StartEvent, WordEvent
from smallest_sync.emulator import Emulator

from .conftest import RecordingOutput
from .sink import SINK_RATE, SinkRecorder, find_segment

RATE = 24000
SENTENCE = "Karaoke needs every word exactly when it is heard"


class Heard:
    """Collects word events with the moment each callback ran."""

    def __init__(self, delay: float = 0.0) -> None:
        self.events: List[Tuple[float, WordEvent, bool]] = []
        self.delay = delay

    def __call__(self, event: WordEvent) -> None:
        self.events.append((time.monotonic(), event, threading.current_thread().name == "smallest-events"))
        if self.delay:
            time.sleep(self.delay)  # a deliberately slow user callback


def played_at(output: RecordingOutput, sample: int) -> float:
    """When ``sample`` of the output's stream (counted from the first sound) was played."""
    position = 0
    first = None
    for when, pcm in output.blocks:
        if first is None:
            loud = np.flatnonzero(pcm)
            if not len(loud):
                continue
            first, position = True, -int(loud[0])
        if position + len(pcm) > sample:
            return when + (sample - position) / RATE
        position += len(pcm)
    raise AssertionError("sample never played")


def test_words_fire_within_30_ms_of_being_played(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    output, heard = RecordingOutput(), Heard()
    utterance = make_speaker(output=output, on_word=heard).speak(SENTENCE)
    served = emulator.served[0]
    assert [e.word for _, e, _ in heard.events] == SENTENCE.split() == [w for w, _, _ in served.words]
    assert all(on_events_thread for _, _, on_events_thread in heard.events)
    first_sound = int(np.flatnonzero(served.pcm)[0])
    for fired, event, _ in heard.events:
        heard_at = played_at(output, round(event.start * RATE) - first_sound)
        assert abs(fired - heard_at) < 0.030, (event.word, fired - heard_at)
    assert [(e.word, e.start, e.end) for e in utterance.words] == [(w, s, e) for w, s, e in served.words]
    assert [e.index for e in utterance.words] == list(range(len(served.words)))


def test_words_fire_when_heard_through_the_sound_card(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sink_recorder: SinkRecorder) -> None:
    heard = Heard()
    make_speaker(output=None, sample_rate=SINK_RATE, on_word=heard).speak(SENTENCE)
    recording = sink_recorder.stop(tail=0.2)
    served = emulator.served[0].pcm
    first_sound = int(np.flatnonzero(served)[0])
    at = find_segment(recording, served[first_sound:], exact=True)
    assert at is not None
    reference = time.monotonic()
    offsets = []
    for fired, event, _ in heard.events:
        index = at + round(event.start * RATE) - first_sound
        heard_at = reference + (index - sink_recorder.index_at(reference)) / RATE
        offsets.append(fired - heard_at)
    assert len(offsets) == len(SENTENCE.split())
    assert max(abs(o) for o in offsets) < 0.030, [round(o * 1000, 1) for o in offsets]


def test_a_slow_word_callback_does_not_stutter_the_audio(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sink_recorder: SinkRecorder) -> None:
    heard = Heard(delay=0.2)
    make_speaker(output=None, sample_rate=SINK_RATE, on_word=heard).speak(SENTENCE)
    recording = sink_recorder.stop(tail=0.2)
    served = emulator.served[0].pcm
    # The whole utterance is in the recording as one exact, unbroken run: no gap anywhere.
    assert find_segment(recording, served[int(np.flatnonzero(served)[0]):], exact=True) is not None


def test_long_text_is_one_timeline_across_its_requests(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    text = " ".join(f"Sentence number {n} is here to make this text long." for n in range(8))
    assert len(text) > 250
    output, heard = MemoryOutput(), Heard()
    utterance = make_speaker(output=output, on_word=heard).speak(text)
    served = emulator.served
    assert len(served) >= 2 and all(len(s.text) <= 250 for s in served)
    assert " ".join(s.text for s in served).split() == text.split()
    assert np.array_equal(output.samples(), np.concatenate([s.pcm for s in served]))
    expected, offset = [], 0.0
    for request in served:  # each request's words, shifted by the audio before it
        expected += [(w, round(s + offset, 4)) for w, s, _ in request.words]
        offset += len(request.pcm) / RATE
    assert [(e.word, e.start) for e in utterance.words] == [(w, pytest.approx(s, abs=1e-3)) for w, s in expected]
    starts = [e.start for e in utterance.words]
    assert starts == sorted(starts)


def test_a_new_utterance_starts_its_own_timeline(make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=MemoryOutput())
    first = speaker.speak("One two three four five six seven.")
    second = speaker.speak("Again from zero.")
    assert second.words[0].start == first.words[0].start < 0.1


def test_voices_without_word_timestamps_still_speak(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    output, heard = MemoryOutput(), Heard()
    utterance = make_speaker(output=output, voice="sophia", model="lightning_v3.1", on_word=heard).speak("No words for me.")
    assert utterance.done and not heard.events and utterance.words == []
    assert np.array_equal(output.samples(), emulator.served[0].pcm)


def test_events_queue_has_start_words_end_in_order(make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=MemoryOutput())
    utterance = speaker.speak("Poll these events.")
    kinds = []
    while True:
        event = speaker.events.get(timeout=5)
        kinds.append(type(event).__name__ if not isinstance(event, WordEvent) else event.word)
        if isinstance(event, EndEvent):
            break
    assert kinds == ["StartEvent", "Poll", "these", "events.", "EndEvent"]
    assert isinstance(StartEvent(utterance), StartEvent)
