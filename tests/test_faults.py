"""The fault matrix: every server misbehaviour the emulator can stage, against each way
of speaking (``speak(text)``, ``say(text).wait()``, ``speak_stream(tokens)``), over real
loopback sockets.

Each row asserts (a) what the user sees: the typed exception, or success with the audio
played equal to the audio served, sample for sample; (b) a generous bound on how long it
took (a hang detector, not a benchmark); (c) that no thread is left behind (the autouse
guard in conftest.py) and, where the row says so, that the same Speaker speaks again
once the fault is cleared.

| # | what the emulator does | what the user gets |
|---|---|---|
| 1 | refuses the key (HTTP 401 on every upgrade) | `AuthenticationError` (`.status_code == 401`) from every call; one handshake in all, however many calls |
| 2 | refuses the first two upgrades with HTTP 503, then accepts | success (reconnects with backoff); audio exact |
| 3 | drops the TCP connection before the first chunk of every request | the request is sent again on a new socket (at most twice more), then `SmallestConnectionError`; after the fault clears the next call works |
| 4 | drops the TCP connection after 2 chunks | `SmallestConnectionError` ("lost mid-utterance"); not sent again, nothing replayed; the next call works |
| 5 | stops sending after 1 chunk, socket left open | `SynthesisTimeout` within `timeout` (+2 s); the next call works on a new socket |
| 6 | an error frame (`{"message": m}` or `{"error": {"message": m, "code": c}}`), before or after audio | `APIError` with the server's `.message` (and `.code` for the object shape); not retried; the next call works |
| 7 | a non-JSON frame in the middle of the audio | success, all audio (the bad frame is skipped) |
| 8 | a frame with an unknown `status` in the middle of the audio | success, all audio (the frame is ignored) |
| 9 | closes the socket after every `complete` | success for every utterance (5 in a row), audio exact; a new socket each time |
| 10 | closes an idle socket (server idle timeout) | the next call reconnects and succeeds, audio exact |
| 11 | closes cleanly (code 1011) after 1 chunk | `SmallestConnectionError` ("lost mid-utterance", with the code 1011); nothing replayed; the next call works |
| 12 | sends slower than real time (half speed) | success; the sound is exactly what was served, with only silence (underruns) between chunks: no crackle, no sample lost or doubled |
| 13 | sends a 3-minute text as fast as it can | the player holds at most its bound (120 s) while it plays; memory stays bounded; `interrupt()` ends it |

A server failure does not cut what already arrived: that audio is heard, then the call
raises (``test_audio_that_arrived_before_a_fault_is_heard_in_full``). A flood while playback
is paused is held to the player's bound (13b, an addition to the issue's rows).
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable, Iterator, List

import numpy as np
import pytest

from smallest_sync import (
    APIError,
    AuthenticationError,
    MemoryOutput,
    SmallestConnectionError,
    Speaker,
    SynthesisTimeout,
    Utterance,
)
from smallest_sync.emulator import Emulator

from .conftest import MAX_SENDS, RecordingOutput, heard_whole, strip_silence

# A hang fails the test here rather than after the suite-wide 60 s.
pytestmark = pytest.mark.timeout(30)

STYLES = ["speak", "say_wait", "speak_stream"]
TEXT = "Faults happen. Life goes on."  # two sentences, ~2 s of tone audio, 7+ chunks each
NEXT = "Back to normal."
TIMEOUT = 2.0  # Speaker timeout of the rows where stalls are not the point
SLACK = 3.0  # the hang detector's allowance on top of the Speaker's own timeout
RATE = 24000
PLAYER_BOUND_S = 120.0  # Player's default max_buffered, in seconds


def tokens(text: str) -> Iterator[str]:
    """``text`` as an LLM would stream it: word by word, spaces kept."""
    words = text.split(" ")
    for index, word in enumerate(words):
        yield word if index == len(words) - 1 else word + " "


def utter(speaker: Speaker, style: str, text: str, bound: float) -> Utterance:
    """Say ``text`` the way ``style`` says; returns the finished Utterance or raises its error."""
    if style == "speak":
        return speaker.speak(text)
    if style == "say_wait":
        handle = speaker.say(text)
        assert handle.wait(bound), f"say().wait() still waiting after {bound} s"
        return handle
    assert style == "speak_stream"
    return speaker.speak_stream(tokens(text))


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """The block must finish (returning or raising) within ``seconds``."""
    began = time.monotonic()
    yield
    took = time.monotonic() - began
    assert took < seconds, f"took {took:.2f} s; the bound is {seconds:.1f} s"


def served_pcm(emulator: Emulator, first: int = 0) -> np.ndarray:
    served = emulator.served[first:]
    return np.concatenate([s.pcm for s in served]) if served else np.zeros(0, np.int16)


def heard_of_first_request(emulator: Emulator) -> np.ndarray:
    """The samples of the first served request that actually left the emulator."""
    first = emulator.served[0]
    return first.pcm[:first.sent_samples]


def assert_heard_only_what_arrived(output: MemoryOutput, emulator: Emulator) -> None:
    """The failed request's audio was played at most once, in order, and only what was
    sent: a prefix of it. (How much of it is played is the subject of
    test_audio_that_arrived_before_a_fault_is_heard_in_full.)"""
    heard, played = heard_of_first_request(emulator), output.samples()
    assert len(played) <= len(heard), f"played {len(played)} samples of {len(heard)} sent"
    assert np.array_equal(played, heard[:len(played)])


def assert_next_works(speaker: Speaker, emulator: Emulator, output: MemoryOutput, style: str) -> None:
    """Fault cleared: the same Speaker speaks again, and plays exactly what is served."""
    emulator.config.fault = None
    played_before, served_before = len(output.samples()), len(emulator.served)
    with within(speaker.timeout + SLACK):
        utterance = utter(speaker, style, NEXT, speaker.timeout + SLACK)
    assert utterance.done and not utterance.interrupted and utterance.error is None
    assert [s.text for s in emulator.served[served_before:]] == [NEXT]
    assert np.array_equal(output.samples()[played_before:], served_pcm(emulator, served_before))


# ----- 1. refused key -------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_refused_key_raises_authentication_error_without_a_retry_storm(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str) -> None:
    emulator.config.refuse_auth = True
    output = MemoryOutput()
    speaker = make_speaker(output=output, timeout=TIMEOUT)
    with within(TIMEOUT + SLACK):
        for _ in range(3):
            with pytest.raises(AuthenticationError) as caught:
                utter(speaker, style, TEXT, TIMEOUT + SLACK)
            assert caught.value.status_code == 401
    assert [h.status for h in emulator.handshakes] == [401]  # one, whatever the number of calls
    assert emulator.served == [] and not output.samples().size
    emulator.config.refuse_auth = False  # final for this Speaker (README): it does not try again
    with pytest.raises(AuthenticationError):
        utter(speaker, style, TEXT, TIMEOUT + SLACK)
    assert len(emulator.handshakes) == 1


# ----- 2. refused, then accepted ----------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_handshakes_refused_then_accepted_succeed(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str) -> None:
    emulator.config.reject_handshakes, emulator.config.reject_status = 2, 503
    output = MemoryOutput()
    speaker = make_speaker(output=output, timeout=TIMEOUT)
    with within(TIMEOUT + SLACK):
        utterance = utter(speaker, style, TEXT, TIMEOUT + SLACK)
    assert utterance.done and not utterance.interrupted
    assert [h.status for h in emulator.handshakes] == [503, 503, 101]
    assert np.array_equal(output.samples(), served_pcm(emulator))
    assert " ".join(s.text for s in emulator.served) == TEXT


# ----- 3. dropped before the first chunk --------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_socket_dropped_before_audio_is_resent_a_bounded_number_of_times(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str) -> None:
    emulator.config.fault, emulator.config.fault_after_chunks = "drop", 0
    output = MemoryOutput()
    speaker = make_speaker(output=output, timeout=TIMEOUT)
    with within(TIMEOUT + SLACK), pytest.raises(SmallestConnectionError):
        utter(speaker, style, TEXT, TIMEOUT + SLACK)
    served = emulator.served
    assert len(served) == MAX_SENDS, [s.text for s in served]  # sent again, twice at most (README)
    assert len({s.text for s in served}) == 1  # the same request each time
    assert all(s.fault == "drop" and s.sent_samples == 0 for s in served)
    assert not output.samples().size
    assert_next_works(speaker, emulator, output, style)


# ----- 4. dropped mid-stream ----------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_socket_dropped_mid_utterance_fails_it_without_replaying_audio(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str) -> None:
    emulator.config.fault, emulator.config.fault_after_chunks = "drop", 2
    output = MemoryOutput()
    speaker = make_speaker(output=output, timeout=TIMEOUT)
    with within(TIMEOUT + SLACK), pytest.raises(SmallestConnectionError, match="lost mid-utterance"):
        utter(speaker, style, TEXT, TIMEOUT + SLACK)
    assert len(emulator.served) == 1  # audio had been heard: never sent again
    assert len(heard_of_first_request(emulator)) == 2 * RATE * 150 // 1000  # two 150 ms chunks went out
    assert_heard_only_what_arrived(output, emulator)  # never twice
    assert_next_works(speaker, emulator, output, style)


# ----- 4, 6, 11. what arrived before the fault is heard --------------------------------
@pytest.mark.parametrize("fault, after", [("drop", 2), ("error", 1), ("close", 1)])
@pytest.mark.parametrize("style", STYLES)
def test_audio_that_arrived_before_a_fault_is_heard_in_full(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str, fault: str, after: int) -> None:
    emulator.config.fault, emulator.config.fault_after_chunks = fault, after  # type: ignore[assignment]
    output = RecordingOutput()  # real time: arrived audio waits in the player to be heard
    speaker = make_speaker(output=output, timeout=TIMEOUT)
    with within(TIMEOUT + SLACK), pytest.raises((SmallestConnectionError, APIError)):
        utter(speaker, style, TEXT, TIMEOUT + SLACK)
    assert len(emulator.served) == 1
    heard = heard_of_first_request(emulator)
    assert len(heard) == after * RATE * 150 // 1000
    assert np.array_equal(strip_silence(output.samples()), strip_silence(heard))  # all of it, once


# ----- 5. stalled forever --------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_stalled_server_times_out_and_the_next_utterance_works(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str) -> None:
    emulator.config.fault, emulator.config.fault_after_chunks = "stall", 1
    output = MemoryOutput()
    speaker = make_speaker(output=output, timeout=0.5)
    with within(0.5 + 2.0), pytest.raises(SynthesisTimeout):
        utter(speaker, style, TEXT, 0.5 + 2.0)
    assert len(emulator.served) == 1
    assert np.array_equal(output.samples(), heard_of_first_request(emulator))
    opened = emulator.connections_opened
    assert_next_works(speaker, emulator, output, style)
    assert emulator.connections_opened == opened + 1  # the stalled socket was given up


# ----- 6. error frame, both shapes -------------------------------------------------------
@pytest.mark.parametrize("after", [0, 1], ids=["before-audio", "after-audio"])
@pytest.mark.parametrize("shape", ["message", "object"])
@pytest.mark.parametrize("style", STYLES)
def test_error_frame_raises_api_error_with_message_and_code(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str, shape: str, after: int) -> None:
    emulator.config.fault, emulator.config.fault_after_chunks = "error", after
    emulator.config.error_shape = shape  # type: ignore[assignment]
    output = MemoryOutput()
    speaker = make_speaker(output=output, timeout=TIMEOUT)
    with within(TIMEOUT + SLACK), pytest.raises(APIError) as caught:
        utter(speaker, style, TEXT, TIMEOUT + SLACK)
    assert caught.value.message == "Emulated synthesis failure"
    assert caught.value.code == ("internal" if shape == "object" else None)
    assert len(emulator.served) == 1  # a server's answer is not retried
    assert_heard_only_what_arrived(output, emulator)
    assert_next_works(speaker, emulator, output, style)


# ----- 7, 8. a bad frame mid-stream is skipped -------------------------------------------
@pytest.mark.parametrize("fault", ["malformed", "unknown_status"])
@pytest.mark.parametrize("style", STYLES)
def test_bad_frame_mid_stream_is_skipped_and_all_audio_plays(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str, fault: str) -> None:
    emulator.config.fault, emulator.config.fault_after_chunks = fault, 1  # type: ignore[assignment]
    output = MemoryOutput()
    speaker = make_speaker(output=output, timeout=TIMEOUT)
    with within(TIMEOUT + SLACK):
        utterance = utter(speaker, style, TEXT, TIMEOUT + SLACK)
    assert utterance.done and not utterance.interrupted and utterance.error is None
    served = emulator.served
    assert served and all(s.fault == fault and s.completed for s in served)  # the fault did fire
    assert " ".join(s.text for s in served) == TEXT
    assert np.array_equal(output.samples(), served_pcm(emulator))
    assert emulator.connections_opened == 1
    assert_next_works(speaker, emulator, output, style)


# ----- 9. closed after every complete ----------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_server_closing_after_every_complete_is_transparent(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str) -> None:
    emulator.config.close_after_complete = True
    output = MemoryOutput()
    speaker = make_speaker(output=output, timeout=TIMEOUT)
    texts = [f"Number {word}." for word in ("one", "two", "three", "four", "five")]
    with within(5 * TIMEOUT + SLACK):
        if style == "say_wait":
            handles = [speaker.say(text) for text in texts]
            assert all(handle.wait(5 * TIMEOUT + SLACK) for handle in handles)
        else:
            handles = [utter(speaker, style, text, TIMEOUT + SLACK) for text in texts]
    assert all(h.done and not h.interrupted and h.error is None for h in handles)
    assert [s.text for s in emulator.served] == texts
    assert np.array_equal(output.samples(), served_pcm(emulator))
    assert emulator.connections_opened >= 5


# ----- 10. idle socket closed by the server ------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_idle_timeout_close_is_followed_by_a_transparent_reconnect(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str) -> None:
    emulator.config.idle_timeout = 0.3
    output = MemoryOutput()
    speaker = make_speaker(output=output, timeout=TIMEOUT, keepalive_interval=60)
    utter(speaker, style, "Before the pause.", TIMEOUT + SLACK)
    assert emulator.wait_for(lambda emu: emu.connections_active == 0, timeout=5)
    with within(TIMEOUT + SLACK):
        utterance = utter(speaker, style, TEXT, TIMEOUT + SLACK)
    assert utterance.done and not utterance.interrupted
    assert emulator.connections_opened >= 2
    assert emulator.served[0].text == "Before the pause."
    assert np.array_equal(output.samples(), served_pcm(emulator))


# ----- 11. clean close mid-stream -----------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_clean_close_mid_utterance_fails_it_and_the_next_works(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str) -> None:
    emulator.config.fault, emulator.config.fault_after_chunks = "close", 1
    output = MemoryOutput()
    speaker = make_speaker(output=output, timeout=TIMEOUT)
    with within(TIMEOUT + SLACK), pytest.raises(SmallestConnectionError, match="lost mid-utterance") as caught:
        utter(speaker, style, TEXT, TIMEOUT + SLACK)
    assert "1011" in str(caught.value)
    assert len(emulator.served) == 1
    assert_heard_only_what_arrived(output, emulator)
    assert_next_works(speaker, emulator, output, style)


# ----- 12. slower than real time ---------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_slow_server_plays_exactly_what_was_served_with_only_silent_gaps(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str) -> None:
    emulator.config.realtime_factor = 0.5  # each 150 ms chunk takes 300 ms to arrive
    output = RecordingOutput()
    speaker = make_speaker(output=output, timeout=TIMEOUT)
    text = "Slow words."  # 0.84 s of audio, 1.7 s to arrive
    with within(2 * 0.84 + TIMEOUT + SLACK):
        utterance = utter(speaker, style, text, 2 * 0.84 + TIMEOUT + SLACK)
    assert utterance.done and not utterance.interrupted
    [served] = emulator.served
    played = output.samples()
    # Underruns only insert silence: the sound itself is identical, in order, none doubled.
    assert np.array_equal(played[played != 0], served.pcm[served.pcm != 0])
    assert len(strip_silence(played)) > len(strip_silence(served.pcm))  # it did underrun


# ----- 13. a flood ------------------------------------------------------------------------
@pytest.mark.parametrize("style", STYLES)
def test_a_flood_of_audio_is_held_to_the_players_bound(
        emulator: Emulator, make_speaker: Callable[..., Speaker], style: str) -> None:
    text = " ".join(["Flooding words keep coming here."] * 84)  # about 3 minutes of tone audio
    output = RecordingOutput()
    speaker = make_speaker(output=output, timeout=TIMEOUT)
    samples: List[float] = []
    problems: List[str] = []

    def watch_then_interrupt() -> None:
        try:
            for step in range(1, 16):  # about 2 s of playback
                if not output.wait_sounding(10 * step, timeout=5):
                    problems.append("playback did not progress")
                    return
                samples.append(speaker._player.buffered_seconds)
        finally:
            speaker.interrupt()

    helper = threading.Thread(target=watch_then_interrupt, name="flood-watcher")
    with within(10):
        helper.start()
        utterance = utter(speaker, style, text, 10)
        helper.join(10)
    assert not helper.is_alive() and not problems
    assert utterance.interrupted
    assert max(samples) > 100, samples  # the flood really filled the player ...
    assert max(samples) <= PLAYER_BOUND_S + 0.5, samples  # ... and never past its bound
    served_seconds = sum(len(s.pcm) for s in emulator.served) / RATE
    assert served_seconds > PLAYER_BOUND_S  # the server offered more than the bound


# ----- 13b. a flood while paused (an addition to the rows) ----------------------------
def test_a_flood_while_paused_is_still_held_to_the_players_bound(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    text = " ".join(["Flooding words keep coming here."] * 84)  # about 3 minutes of tone audio
    speaker = make_speaker(output=RecordingOutput(), timeout=0.2)
    speaker.pause()
    handle = speaker.say(text)
    # Re-checked at every chunk the emulator sends, and once more at the timeout.
    filled = emulator.wait_for(lambda emu: speaker._player.buffered_seconds >= PLAYER_BOUND_S - 1, timeout=5)
    over = emulator.wait_for(lambda emu: speaker._player.buffered_seconds > PLAYER_BOUND_S + 0.5, timeout=2)
    buffered = speaker._player.buffered_seconds
    speaker.interrupt()
    assert handle.wait(2) and handle.interrupted
    assert filled, f"only {buffered:.1f} s of audio was queued: the flood never reached the bound"
    assert not over, f"{buffered:.1f} s of audio queued while paused; the bound is {PLAYER_BOUND_S:.0f} s"


def test_an_utterance_queued_behind_long_speech_is_not_called_stalled(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    # It waits for the one ahead to finish playing; that is not a dead device.
    speaker = make_speaker(output=RecordingOutput(), timeout=0.5)
    speaker.say("one two three four five six seven")  # about 2.5 s
    assert heard_whole(speaker.speak("short"))
