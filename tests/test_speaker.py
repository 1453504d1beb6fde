"""The Speaker against the emulator over a real loopback WebSocket."""
from __future__ import annotations

import json
import logging
import threading
import time
import wave
from pathlib import Path
from typing import Any, Callable, List, Tuple

import numpy as np
import pytest

from smallest_sync import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    EndEvent,
    MemoryOutput,
    SmallestConnectionError,
    Speaker,
    SpeakerClosedError,
    SynthesisTimeout,
)
from smallest_sync.emulator import Emulator, EmulatorConfig, synthesize

from .conftest import API_KEY, MAX_SENDS, RecordingOutput, heard_whole, strip_silence

LONG_TEXT = " ".join(["interruptible"] * 40)  # about 30 s of tone audio


def requests_received(emulator: Emulator) -> List[dict]:
    return [r.message for r in emulator.received if r.message and r.message.get("text", "").strip()]


def test_sends_the_documented_request_and_headers(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=MemoryOutput(), speed=1.25)
    speaker.speak("Hello there.")
    headers = emulator.handshakes[0].headers
    assert emulator.handshakes[0].path.startswith("/waves/v1/tts/live")
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["x-source"] == "smallest_sync"
    assert headers["x-smallest-sync-version"]
    [request] = requests_received(emulator)
    client_id = request.pop("request_id")
    assert client_id and emulator.served[0].external_request_id == client_id
    assert request == {
        "text": "Hello there.", "voice_id": "meher", "model": "lightning_v3.1_pro", "language": "en",
        "sample_rate": 24000, "speed": 1.25, "word_timestamps": True, "output_format": "pcm",
        "complete_backoff_ms": 0,
    }


def test_played_audio_equals_served_audio_sample_for_sample(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    output = MemoryOutput()
    speaker = make_speaker(output=output)
    utterance = speaker.speak("Every sample counts.")
    served = emulator.served[0].pcm
    assert np.array_equal(output.samples(), served)
    assert np.array_equal(served, synthesize("Every sample counts.", sample_rate=24000)[0])
    assert utterance.done and not utterance.interrupted
    assert utterance.duration == pytest.approx(len(served) / 24000)
    assert utterance.time_to_first_audio is not None and utterance.time_to_first_audio > 0


def test_wav_output_holds_what_was_served(emulator: Emulator, make_speaker: Callable[..., Speaker], tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    speaker = make_speaker(output=str(path), sample_rate=16000)
    speaker.speak("Written to a file.")
    speaker.close()
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert np.array_equal(samples, emulator.served[0].pcm)


def test_callable_output_receives_every_sample(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    blocks: List[np.ndarray] = []
    threads = set()

    def sink(pcm: np.ndarray) -> None:
        threads.add(threading.current_thread().name)
        blocks.append(pcm.copy())

    make_speaker(output=sink).speak("Straight to a function.")
    assert np.array_equal(np.concatenate(blocks), emulator.served[0].pcm)
    assert threads == {"smallest-audio"}  # the one thread that writes outputs


@pytest.mark.parametrize("output_format", ["wav", "ulaw", "alaw"])
def test_other_wire_formats_decode_to_the_same_speech(emulator: Emulator, make_speaker: Callable[..., Speaker], output_format: str) -> None:
    output = MemoryOutput()
    make_speaker(output=output, output_format=output_format).speak("Encoded on the wire.")
    served, played = emulator.served[0].pcm.astype(float), output.samples().astype(float)
    assert len(played) == len(served)
    if output_format == "wav":
        assert np.array_equal(played, served)
    else:  # G.711 is lossy: the decoded wave must still follow the original closely
        assert np.corrcoef(played, served)[0, 1] > 0.99


def test_half_samples_split_across_chunks_are_rejoined(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.odd_chunks = True
    output = MemoryOutput()
    make_speaker(output=output).speak("Odd sized chunks.")
    assert np.array_equal(output.samples(), emulator.served[0].pcm)


def test_queued_utterances_play_in_order_without_loss(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    output = MemoryOutput()
    speaker = make_speaker(output=output)
    texts = ["First one.", "Second one here.", "And the third."]
    handles = [speaker.say(text) for text in texts]
    for handle in handles:
        assert handle.wait(10)
    expected = np.concatenate([synthesize(text, sample_rate=24000)[0] for text in texts])
    assert np.array_equal(output.samples(), expected)
    assert [r["text"] for r in requests_received(emulator)] == texts
    assert emulator.connections_opened == 1


def test_update_applies_to_the_next_request_without_reconnecting(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=MemoryOutput())
    speaker.speak("Before.")
    speaker.update(voice="liam", speed=1.5, language="hi")
    speaker.speak("After.")
    first, second = requests_received(emulator)
    assert (first["voice_id"], first.get("speed"), first["language"]) == ("meher", None, "en")
    assert (second["voice_id"], second["speed"], second["language"]) == ("liam", 1.5, "hi")
    assert emulator.connections_opened == 1
    with pytest.raises(ConfigurationError):
        speaker.update(speed=5)
    with pytest.raises(ConfigurationError):
        speaker.update(sample_rate=8000)


def test_bad_input_is_refused_before_anything_is_sent(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=MemoryOutput())
    for bad in ("", "   \n", None, 42):
        with pytest.raises(ConfigurationError):
            speaker.speak(bad)  # type: ignore[arg-type]
    for options in ({"speed": 3.0}, {"sample_rate": 22050}, {"model": "nope"}, {"timeout": 0}):
        with pytest.raises(ConfigurationError):
            make_speaker(**options)
    assert requests_received(emulator) == []


def test_plain_ws_to_a_remote_host_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unencrypted"):
        Speaker(API_KEY, base_url="ws://tts.example.com", output=MemoryOutput())


def test_missing_key_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMALLEST_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="SMALLEST_API_KEY"):
        Speaker(output=MemoryOutput())


def test_server_error_frame_fails_the_utterance_with_api_error(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=MemoryOutput(), voice="nobody_by_that_name")
    with pytest.raises(APIError) as caught:
        speaker.speak("Who is speaking?")
    assert caught.value.message
    speaker.update(voice="meher")
    assert heard_whole(speaker.speak("Now it works."))


def test_wrong_key_raises_authentication_error_without_retrying(make_speaker: Callable[..., Speaker]) -> None:
    with Emulator(EmulatorConfig(realtime_factor=0), api_key="sk_the_right_one") as strict:
        speaker = make_speaker(base_url=strict.base_url, api_key="sk_a_wrong_one", output=MemoryOutput())
        for _ in range(3):
            with pytest.raises(AuthenticationError) as caught:
                speaker.speak("Let me in.")
            assert caught.value.status_code == 401
        assert len(strict.handshakes) == 1
        assert "sk_a_wrong_one" not in str(caught.value)


def test_keepalives_keep_an_idle_socket_past_the_server_idle_timeout(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.idle_timeout = 0.5
    speaker = make_speaker(output=MemoryOutput(), keepalive_interval=0.15)
    speaker.speak("Stay with me.")

    def keepalives(emu: Emulator) -> int:
        return sum(1 for r in emu.received if r.message and r.message.get("text") == " ")

    # Four idle timeouts' worth of silence from us, bridged only by keepalives.
    assert emulator.wait_for(lambda emu: keepalives(emu) >= 12, timeout=10)
    times = [r.time for r in emulator.received if r.message and r.message.get("text") == " "]
    gaps = np.diff(times)
    assert gaps.max() < 0.5 and np.median(gaps) == pytest.approx(0.15, abs=0.08)
    assert heard_whole(speaker.speak("Still here."))
    assert emulator.connections_opened == 1 and emulator.connections_active == 1


def test_reconnects_transparently_after_the_server_closed_an_idle_socket(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.idle_timeout = 0.3
    output = MemoryOutput()
    speaker = make_speaker(output=output, keepalive_interval=60)
    speaker.speak("One.")
    assert emulator.wait_for(lambda emu: emu.connections_active == 0, timeout=5)
    assert heard_whole(speaker.speak("Two."))
    assert emulator.connections_opened == 2
    assert np.array_equal(output.samples(), np.concatenate([s.pcm for s in emulator.served]))


def test_survives_a_server_that_closes_after_every_complete(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.close_after_complete = True
    output = MemoryOutput()
    speaker = make_speaker(output=output)
    handles = [speaker.say(f"Number {n}.") for n in range(4)]
    assert all(h.wait(10) for h in handles)
    assert not any(h.interrupted for h in handles)
    assert [s.text for s in emulator.served] == [f"Number {n}." for n in range(4)]
    assert np.array_equal(output.samples(), np.concatenate([s.pcm for s in emulator.served]))


def test_one_complete_per_burst_is_understood(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.complete_mode = "per_burst"
    output = MemoryOutput()
    speaker = make_speaker(output=output)
    handles = [speaker.say(text) for text in ("Burst one.", "Burst two.")]
    assert all(h.wait(10) for h in handles)
    assert np.array_equal(output.samples(), np.concatenate([s.pcm for s in emulator.served]))


def test_a_stalled_server_times_out_and_the_next_utterance_works(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.fault, emulator.config.fault_after_chunks = "stall", 1
    speaker = make_speaker(output=MemoryOutput(), timeout=0.5)
    with pytest.raises(SynthesisTimeout):
        speaker.speak("This will hang.")
    emulator.config.fault = None
    assert heard_whole(speaker.speak("This will not."))


def test_a_socket_dropped_before_audio_is_retried_then_reported(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.fault, emulator.config.fault_after_chunks = "drop", 0
    speaker = make_speaker(output=MemoryOutput())
    with pytest.raises(SmallestConnectionError):
        speaker.speak("Never arrives.")
    assert len(emulator.served) == MAX_SENDS  # resent a bounded number of times
    emulator.config.fault = None
    assert heard_whole(speaker.speak("Arrives."))


def test_refused_handshakes_are_retried_with_backoff(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.reject_handshakes = 2
    assert heard_whole(make_speaker(output=MemoryOutput()).speak("Third time lucky."))
    assert [h.status for h in emulator.handshakes][:2] == [503, 503]


def test_interrupt_from_another_thread_cuts_a_long_utterance(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.realtime_factor = 2.0  # the server is still sending when we interrupt
    output = RecordingOutput()
    speaker = make_speaker(output=output)
    returned_at: List[float] = []

    def barge_in() -> None:
        assert output.wait_sounding(20, timeout=10)  # 0.4 s of it has been heard
        speaker.interrupt()
        returned_at.append(time.monotonic())

    helper = threading.Thread(target=barge_in)
    helper.start()
    began = time.monotonic()
    utterance = speaker.speak(LONG_TEXT)
    finished = time.monotonic()
    helper.join(10)
    assert utterance.interrupted and utterance.done
    served_seconds = len(emulator.served[0].pcm) / 24000  # its first request alone
    assert served_seconds > 10 and finished - began < served_seconds / 4
    assert 0.2 < utterance.duration < 3
    assert not output.played_after(returned_at[0]).any(), "audio of the interrupted utterance played after interrupt()"
    # The next utterance plays whole, on a fresh socket (the old one still carried stale audio).
    after = output.samples().size
    speaker.speak("Next.")
    assert np.array_equal(strip_silence(output.samples()[after:]), strip_silence(emulator.served[-1].pcm))
    assert emulator.connections_opened == 2


def test_interrupt_after_all_audio_arrived_keeps_the_socket(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    output = RecordingOutput()
    speaker = make_speaker(output=output)
    handle = speaker.say(" ".join(["queued"] * 12))
    # The emulator sends it all at once; 0.2 s into playback it has long arrived.
    assert output.wait_sounding(10, timeout=5)
    assert handle.state == "playing"
    speaker.interrupt()
    assert handle.wait(2) and handle.interrupted
    speaker.speak("Same socket.")
    assert emulator.connections_opened == 1


def test_interrupt_drops_everything_queued_and_cancel_drops_one(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    output = RecordingOutput()
    ended: List[Any] = []
    speaker = make_speaker(output=output, on_end=lambda event: ended.append(event.utterance))
    first, second, third = (speaker.say(f"{word} " * 8) for word in ("alpha", "beta", "gamma"))
    second.cancel()
    assert first.wait(10) and not first.interrupted
    assert third.wait(10) and not third.interrupted
    assert second.interrupted
    played = strip_silence(output.samples())
    assert len(played) == pytest.approx(len(strip_silence(np.concatenate([emulator.served[0].pcm, emulator.served[-1].pcm]))), abs=2 * 480)
    assert "beta " * 8 not in [s.text for s in emulator.served]
    queued = [speaker.say(f"queued {n}") for n in range(3)]
    speaker.interrupt()
    assert all(q.wait(2) and q.interrupted for q in queued)
    speaker.close()
    assert set(map(id, ended)) >= set(map(id, [first, second, third, *queued]))


def test_close_is_idempotent_and_refuses_new_text(make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=MemoryOutput())
    speaker.speak("Bye.")
    speaker.close()
    speaker.close()
    with pytest.raises(SpeakerClosedError):
        speaker.say("Too late.")


def test_close_while_speaking_releases_the_waiter(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=RecordingOutput())
    handle = speaker.say(LONG_TEXT)
    assert emulator.wait_for(lambda emu: bool(emu.served), timeout=5)
    speaker.close()
    assert handle.wait(1) and handle.interrupted


def test_context_manager_lets_queued_speech_finish(emulator: Emulator) -> None:
    output = MemoryOutput()
    with Speaker(API_KEY, base_url=emulator.base_url, output=output) as speaker:
        handle = speaker.say("Finish me.")
    assert handle.done and not handle.interrupted
    assert np.array_equal(output.samples(), emulator.served[0].pcm)


def test_callbacks_run_on_the_events_thread(make_speaker: Callable[..., Speaker]) -> None:
    seen: List[str] = []
    done = threading.Event()

    def on_end(event: EndEvent) -> None:
        seen.append(threading.current_thread().name)
        done.set()

    make_speaker(output=MemoryOutput(), on_start=lambda e: seen.append(threading.current_thread().name), on_end=on_end).speak("Hi.")
    assert done.wait(5)
    assert seen == ["smallest-events", "smallest-events"]


def test_the_key_never_appears_in_logs_or_reprs(emulator: Emulator, make_speaker: Callable[..., Speaker], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    speaker = make_speaker(output=RecordingOutput())
    handle = speaker.say(LONG_TEXT)
    assert emulator.wait_for(lambda emu: bool(emu.served), timeout=5)
    speaker.interrupt()
    handle.wait(5)
    speaker.speak("Once more.")
    texts = [caplog.text, repr(speaker), repr(handle), repr(speaker._pool.conn)]
    speaker.close()
    assert not any(API_KEY in text for text in texts)
    # Only the socket pool, which sends it, holds the key.
    assert json.dumps(vars(speaker), default=repr).count(API_KEY) == 0
    assert json.dumps(vars(speaker._pool), default=repr).count(API_KEY) == 1


def test_ten_kilobytes_of_text_are_split_at_sentences_and_all_spoken(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    sentences = [f"Line {n} says \"quotes\", and\nnewlines — emoji 🎉 and שלום too." for n in range(180)]
    text = " ".join(sentences)
    assert len(text.encode()) > 10_000
    output = MemoryOutput()
    make_speaker(output=output).speak(text)
    served = [s.text for s in emulator.served]
    assert all(len(t) <= 250 for t in served)
    assert " ".join(served).split() == text.split()
    assert all(t.rstrip().endswith(".") for t in served)  # cut between sentences, never inside one
    assert np.array_equal(output.samples(), np.concatenate([s.pcm for s in emulator.served]))


def test_keepalive_replies_never_end_a_request_early(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    # An old server: answers whitespace keepalives with a complete, echoes no ids.
    emulator.config.keepalive_reply = "complete"
    emulator.config.echo_external_ids = False
    output = MemoryOutput()
    speaker = make_speaker(output=output, keepalive_interval=0.01)
    for n in range(25):
        utterance = speaker.speak(f"Number {n} please.")
        assert utterance.duration > 0.5, f"utterance {n} ended before its audio"
    assert np.array_equal(output.samples(), np.concatenate([s.pcm for s in emulator.served if s.text.strip()]))


def test_sink_outputs_get_nothing_of_an_interrupted_utterance_after_interrupt(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.realtime_factor = 1.0  # still arriving, and being written, when interrupted
    writes: List[Tuple[float, int]] = []
    started = threading.Event()

    def sink(pcm: np.ndarray) -> None:
        writes.append((time.monotonic(), len(pcm)))
        started.set()

    speaker = make_speaker(output=sink)
    handle = speaker.say(" ".join(["written"] * 20))
    assert started.wait(5)
    speaker.interrupt()
    returned = time.monotonic()
    assert handle.wait(2) and handle.interrupted
    assert not [n for when, n in writes if when > returned]
