"""Token streams (LLM output), queued say() from many threads, synthesize, pause."""
from __future__ import annotations

import threading
import time
import wave
from pathlib import Path
from typing import Callable, Iterator, List

import numpy as np
import pytest

from smallest_sync import AudioEvent, ConfigurationError, MemoryOutput, SmallestError, Speaker
from smallest_sync.emulator import Emulator, synthesize

from .conftest import RecordingOutput, heard_whole
from .sink import SINK_RATE, SinkRecorder, find_segment

ANSWER = [f"Sentence {n} of it." for n in range(1, 11)]


def llm(sentences: List[str], finished: List[float], delay: float = 0.03) -> Iterator[str]:
    """Yields an answer a few characters at a time, like a language model."""
    for sentence in sentences:
        for word in sentence.split(" "):
            time.sleep(delay)  # the model thinking
            yield word + " "
    finished.append(time.monotonic())


def test_a_streamed_answer_starts_early_and_plays_every_sentence_once_in_order(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    output = RecordingOutput()
    started: List[float] = []
    finished: List[float] = []
    speaker = make_speaker(output=output, speed=2.0, on_start=lambda event: started.append(time.monotonic()))
    utterance = speaker.speak_stream(llm(ANSWER, finished))
    assert utterance.done and not utterance.interrupted
    assert started[0] < finished[0] - 0.5, "speech should start long before the model finishes"
    sent = " ".join(s.text for s in emulator.served)
    assert sent.split() == " ".join(ANSWER).split()
    for sentence in ANSWER:
        assert sent.count(sentence.split(" ", 1)[1]) == 1
    played = output.samples()
    served = np.concatenate([s.pcm for s in emulator.served])
    first = int(np.flatnonzero(played)[0])
    assert np.array_equal(played[first:first + len(served) - int(np.flatnonzero(served)[0])],
                          served[int(np.flatnonzero(served)[0]):])
    starts = [w.start for w in utterance.words]
    assert len(starts) == len(" ".join(ANSWER).split()) and starts == sorted(starts)


def test_say_stream_returns_at_once_and_reports_a_broken_stream(make_speaker: Callable[..., Speaker]) -> None:
    def broken() -> Iterator[str]:
        yield "Half a sentence, then "
        raise RuntimeError("the model crashed")

    speaker = make_speaker(output=MemoryOutput())
    utterance = speaker.say_stream(broken())
    with pytest.raises(SmallestError) as caught:
        utterance.wait(10)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert heard_whole(speaker.speak("The next one is fine."))


def test_speak_stream_propagates_the_stream_error(make_speaker: Callable[..., Speaker]) -> None:
    def broken() -> Iterator[str]:
        yield "Some words. "
        raise KeyError("gone")

    speaker = make_speaker(output=MemoryOutput())
    with pytest.raises(KeyError):
        speaker.speak_stream(broken())
    assert heard_whole(speaker.speak("Still usable."))


def test_ten_says_from_three_threads_play_in_order_sample_exact(
        emulator: Emulator, make_speaker: Callable[..., Speaker], sink_recorder: SinkRecorder) -> None:
    speaker = make_speaker(output=None, sample_rate=SINK_RATE, speed=2.0)
    handles = []
    lock = threading.Lock()
    go = threading.Barrier(3)

    def worker(name: str, count: int) -> None:
        go.wait(5)
        for n in range(count):
            handle = speaker.say(f"{name} says number {n}.")
            with lock:
                handles.append(handle)

    threads = [threading.Thread(target=worker, args=(name, count)) for name, count in (("ann", 4), ("bob", 3), ("cy", 3))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(handles) == 10 and all(h.wait(30) for h in handles)
    recording = sink_recorder.stop(tail=0.3)
    in_order = sorted(handles, key=lambda h: h.serial)
    assert [s.text for s in emulator.served] == [h.text for h in in_order]
    everything = np.concatenate([s.pcm for s in emulator.served])
    first = int(np.flatnonzero(everything)[0])
    # All ten, back to back, as one exact run: in order, nothing lost, doubled, gapped or overlapped.
    assert find_segment(recording, everything[first:], exact=True) is not None


def test_synthesize_and_save_return_audio_without_playing(
        emulator: Emulator, make_speaker: Callable[..., Speaker], tmp_path: Path) -> None:
    output = MemoryOutput()
    speaker = make_speaker(output=output)
    pcm = speaker.synthesize("Just the samples, please.")
    assert pcm.dtype == np.int16 and np.array_equal(pcm, synthesize("Just the samples, please.")[0])
    path = tmp_path / "saved.wav"
    speaker.save("Into a file.", str(path))
    with wave.open(str(path)) as wav:
        saved = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert np.array_equal(saved, emulator.served[-1].pcm)
    assert output.samples().size == 0
    requests = len(emulator.served)
    with pytest.raises(ConfigurationError, match="cannot write WAV file"):
        speaker.save("Nowhere to go.", str(tmp_path / "missing" / "x.wav"))
    assert len(emulator.served) == requests  # refused before anything was sent


def test_on_audio_sees_every_chunk_as_it_arrives(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    chunks: List[np.ndarray] = []
    done = threading.Event()
    speaker = make_speaker(output=MemoryOutput(), on_audio=lambda event: chunks.append(event.samples),
                           on_end=lambda event: done.set())
    speaker.speak("Tap the audio.")
    assert done.wait(5)
    assert len(chunks) > 1 and np.array_equal(np.concatenate(chunks), emulator.served[0].pcm)
    assert isinstance(AudioEvent(chunks[0], None), AudioEvent)  # type: ignore[arg-type]


def test_pause_holds_and_resume_continues_without_losing_audio(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    output = RecordingOutput()
    speaker = make_speaker(output=output)
    handle = speaker.say(" ".join(["paused"] * 8))
    assert output.wait_sounding(10, timeout=5)
    speaker.pause()
    assert speaker.paused
    before = len(output.blocks)
    assert not handle.wait(0.5), "a paused utterance must not finish"
    assert len(output.blocks) <= before + 1
    speaker.resume()
    assert handle.wait(10) and not handle.interrupted
    played = output.samples()
    served = emulator.served[0].pcm
    first = int(np.flatnonzero(served)[0])
    start = int(np.flatnonzero(played)[0])
    assert np.array_equal(played[start:start + len(served) - first], served[first:])


@pytest.mark.parametrize("continue_mode, complete_mode, echo", [
    ("immediate", "per_request", True), ("immediate", "per_request", False), ("immediate", "per_burst", False),
    ("buffered", "per_request", True), ("buffered", "per_request", False),
])
def test_context_mode_streams_one_turn_on_every_server_variant(
        emulator: Emulator, make_speaker: Callable[..., Speaker], continue_mode: str, complete_mode: str, echo: bool) -> None:
    emulator.config.continue_mode = continue_mode
    emulator.config.complete_mode = complete_mode
    emulator.config.echo_external_ids = echo
    output = MemoryOutput()
    finished: List[float] = []
    speaker = make_speaker(output=output, stream_mode="context")
    sentences = ANSWER[:4]
    utterance = speaker.speak_stream(llm(sentences, finished, delay=0.005))
    assert utterance.done and not utterance.interrupted
    messages = [r.message for r in emulator.received if r.message and r.message.get("context_id")]
    assert {m["context_id"] for m in messages} == {messages[0]["context_id"]}
    assert all(m["continue"] is True for m in messages[:-1]) and messages[-1] == {
        **{k: messages[-1][k] for k in ("voice_id", "model", "language", "sample_rate", "output_format")},
        "text": "", "context_id": messages[0]["context_id"], "continue": False,
        **({"word_timestamps": True} if "word_timestamps" in messages[-1] else {})}
    spoken = " ".join(s.text for s in emulator.served)
    assert spoken.split() == " ".join(sentences).split()
    assert np.array_equal(output.samples(), np.concatenate([s.pcm for s in emulator.served]))
    starts = [w.start for w in utterance.words]
    assert len(starts) == len(spoken.split()) and starts == sorted(starts)
    assert heard_whole(speaker.speak("And the next utterance."))


def test_context_mode_waits_for_a_slow_server_to_start_each_fragment(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.first_chunk_delay = 0.8  # slower to start than the 0.5 s settle
    output = MemoryOutput()
    speaker = make_speaker(output=output, stream_mode="context")
    utterance = speaker.speak_stream(iter(["First part here. ", "Second part here. ", "Third part here."]))
    assert utterance.done and not utterance.interrupted
    assert np.array_equal(output.samples(), np.concatenate([s.pcm for s in emulator.served]))
    assert " ".join(s.text for s in emulator.served).split() == "First part here. Second part here. Third part here.".split()


def test_context_mode_keeps_the_socket_alive_through_a_long_pause_in_the_text(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.idle_timeout = 0.5

    def thinking_model() -> Iterator[str]:
        yield "Let me think. "
        assert emulator.wait_for(lambda emu: sum(1 for r in emu.received if (r.message or {}).get("type") == "ping") >= 4, 10)
        yield "Here is the answer."

    speaker = make_speaker(output=MemoryOutput(), stream_mode="context", keepalive_interval=0.15)
    utterance = speaker.speak_stream(thinking_model())
    assert utterance.done and not utterance.interrupted
    assert emulator.connections_opened == 1
