"""Speaker(cache_dir=...): phrases spoken before replay from disk, instantly and offline."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, List

import numpy as np
import pytest

from smallest_sync import ConfigurationError, MemoryOutput, SmallestConnectionError, Speaker, WordEvent
from smallest_sync.emulator import Emulator, EmulatorConfig

from .conftest import API_KEY

PROMPT = "Yes? I am listening."


def _requests(emulator: Emulator) -> List[str]:
    return [r.message["text"] for r in emulator.received
            if r.message and r.message.get("text", "").strip()]


def test_a_phrase_spoken_before_replays_from_disk_with_the_same_audio_and_words(
        tmp_path: Path, emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    first_out, again_out = MemoryOutput(), MemoryOutput()
    first = make_speaker(output=first_out, cache_dir=tmp_path).speak(PROMPT)
    heard: List[WordEvent] = []
    callbacks_done = threading.Event()  # callbacks run in order on the events thread, after speak() may return
    again = make_speaker(output=again_out, cache_dir=tmp_path, on_word=heard.append,
                         on_end=lambda _: callbacks_done.set()).speak(PROMPT)
    assert (first.cached, again.cached) == (False, True)
    assert _requests(emulator) == [PROMPT]  # the second Speaker sent nothing
    assert np.array_equal(again_out.samples(), first_out.samples()) and len(first_out.samples())
    assert [(w.word, w.start, w.end) for w in again.words] == [(w.word, w.start, w.end) for w in first.words]
    assert [w.word for w in again.words] == PROMPT.split()
    assert [w.index for w in again.words] == list(range(len(PROMPT.split())))
    assert callbacks_done.wait(5.0)
    assert [w.word for w in heard] == PROMPT.split()  # on_word fires for replayed words too


def test_cached_phrases_play_with_the_service_unreachable(tmp_path: Path, emulator: Emulator,
                                                         make_speaker: Callable[..., Speaker]) -> None:
    make_speaker(output=MemoryOutput(), cache_dir=tmp_path).speak(PROMPT)
    port = int(emulator.base_url.rsplit(":", 1)[1])
    emulator.stop()  # the network is gone
    offline = Speaker(API_KEY, base_url=f"ws://127.0.0.1:{port}", output=MemoryOutput(), cache_dir=tmp_path,
                      timeout=2.0, standby=False)
    try:
        assert offline.speak(PROMPT).cached
        with pytest.raises(SmallestConnectionError):
            offline.speak("Something never said before.")
    finally:
        offline.close()


def test_changing_a_setting_that_changes_the_audio_is_a_miss(
        tmp_path: Path, emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=MemoryOutput(), cache_dir=tmp_path)
    speaker.speak(PROMPT)
    speaker.update(speed=1.5)
    faster = speaker.speak(PROMPT)
    speaker.update(speed=None)
    same = speaker.speak(PROMPT)
    assert (faster.cached, same.cached) == (False, True)
    assert _requests(emulator) == [PROMPT, PROMPT]


def test_a_phrase_cut_off_while_still_arriving_is_not_kept(tmp_path: Path) -> None:
    text = "A long sentence that is cut off before all of it arrives, so it must not be cached."
    with Emulator(EmulatorConfig(realtime_factor=1.0)) as paced:  # the server sends at speaking pace
        speaker = Speaker(API_KEY, base_url=paced.base_url, output=MemoryOutput(), cache_dir=tmp_path, standby=False)
        try:
            utterance = speaker.say(text)
            assert paced.wait_for(lambda e: bool(e.served) and e.served[0].sent_samples > 0, 5.0)
            speaker.interrupt()
            assert utterance.interrupted
            assert not speaker.speak(text).cached
            assert _requests(paced) == [text, text]
            assert speaker.speak(text).cached  # the whole one was kept
        finally:
            speaker.close()


def test_synthesize_and_speak_share_the_cache(tmp_path: Path, emulator: Emulator,
                                              make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=MemoryOutput(), cache_dir=tmp_path)
    audio = speaker.synthesize(PROMPT)
    spoken = speaker.speak(PROMPT)
    assert spoken.cached and np.array_equal(speaker.synthesize(PROMPT), audio)
    assert _requests(emulator) == [PROMPT]


def test_a_cache_dir_that_is_a_file_is_refused_before_anything_is_sent(
        tmp_path: Path, emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(ConfigurationError):
        make_speaker(cache_dir=tmp_path / "file")
    assert emulator.connections_opened == 0
