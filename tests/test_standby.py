"""The standby socket: after interrupt() the next request needs no new connection."""
from __future__ import annotations

from typing import Callable, Tuple

import numpy as np

from smallest_sync import MemoryOutput, Speaker, Utterance
from smallest_sync.emulator import Emulator

from .conftest import RecordingOutput, heard_whole


def speaking_with_standby(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> Tuple[Speaker, Utterance]:
    """A Speaker with its primary and standby open, speaking a long utterance the
    server is still streaming (so an interrupt retires the primary)."""
    emulator.config.realtime_factor = 2.0
    output = RecordingOutput()
    speaker = make_speaker(output=output, standby=True)
    assert emulator.wait_for(lambda emu: emu.connections_active == 2, 5), "a primary and a standby"
    handle = speaker.say(" ".join(["interrupted"] * 30))
    assert output.wait_sounding(5, timeout=5)
    return speaker, handle


def test_after_an_interrupt_the_next_request_uses_the_standby_socket(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    speaker, handle = speaking_with_standby(emulator, make_speaker)
    standby_id = emulator.handshakes[1].connection_id
    speaker.interrupt()
    assert handle.wait(2) and handle.interrupted
    speaker.speak("Straight away.")
    [request] = [r for r in emulator.received if (r.message or {}).get("text") == "Straight away."]
    assert request.connection_id == standby_id
    # ...and a new standby is opened for the next interrupt.
    assert emulator.wait_for(lambda emu: emu.connections_active == 2 and emu.connections_opened == 3, 5)


def test_keepalives_keep_both_sockets_open(emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    emulator.config.idle_timeout = 0.5
    output = MemoryOutput()
    speaker = make_speaker(output=output, standby=True, keepalive_interval=0.15)
    speaker.speak("Stay, both of you.")

    def pinged(emu: Emulator, cid: int) -> int:
        return sum(1 for r in emu.received if r.connection_id == cid and (r.message or {}).get("text") == " ")

    assert emulator.wait_for(lambda emu: len(emu.handshakes) >= 2, 5)
    first, second = (h.connection_id for h in emulator.handshakes[:2])
    assert emulator.wait_for(lambda emu: pinged(emu, first) >= 8 and pinged(emu, second) >= 8, 10)
    assert emulator.connections_opened == 2 and emulator.connections_active == 2
    assert heard_whole(speaker.speak("Still both here."))
    assert np.array_equal(output.samples(), np.concatenate([s.pcm for s in emulator.served]))


def test_speech_after_an_interrupt_never_waits_for_the_new_standby_handshake(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    """The replacement standby is opened off the request's path: with handshakes
    that take 4 s, speech right after the interrupt, and again once that speech
    ended, is heard while the new standby's handshake is still pending."""
    speaker, handle = speaking_with_standby(emulator, make_speaker)
    emulator.config.handshake_delay = 4.0
    speaker.interrupt()
    first = speaker.say("Now.")
    assert first.wait(2.0) and first.done, "the first request after the interrupt waited"
    second = speaker.say("Then.")
    assert second.wait(2.0) and second.done, "the request after that waited for the standby"
    assert handle.interrupted
    texts = [(r.message or {}).get("text") for r in emulator.received]
    assert "Now." in texts and "Then." in texts
    assert emulator.connections_active == 1, "the new standby's handshake is still pending"
    emulator.config.handshake_delay = 0.0
    assert emulator.wait_for(lambda emu: emu.connections_active == 2 and emu.connections_opened == 3, 10)


def test_a_standby_refused_once_is_opened_on_the_next_try(
        emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    speaker, handle = speaking_with_standby(emulator, make_speaker)
    emulator.config.reject_handshakes = 1  # the new standby's first handshake: 503
    speaker.interrupt()
    assert handle.wait(2) and handle.interrupted
    assert emulator.wait_for(lambda emu: emu.connections_active == 2 and emu.connections_opened == 3, 10), \
        "a standby again after the refusal"
    statuses = [h.status for h in emulator.handshakes]
    assert statuses[-2:] == [503, 101], statuses
    assert heard_whole(speaker.speak("Still fine."))
