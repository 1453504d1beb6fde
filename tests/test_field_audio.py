"""Devices as they are in the field: cards that refuse 24 kHz (the ALSA test devices
of tests/devices.py, which refuse rates as a Pi's USB and HDMI outputs do), stereo-only
HDMI, and a program that speaks without a word on stderr."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np
import pytest
import soxr

from smallest_sync import AudioDeviceError, Speaker, WordEvent
from smallest_sync.emulator import Emulator

from .devices import ALSA_DIR, REPO, AlsaDevice, hdmi_device, rate_device  # noqa: F401  (fixtures)

pytestmark = pytest.mark.device
TEXT = "Hello from the field, with a few words."


def _served(emulator: Emulator) -> np.ndarray:
    return np.concatenate([s.pcm for s in emulator.served if len(s.pcm)])


def _close_to(heard: np.ndarray, expected: np.ndarray) -> bool:
    """``heard`` is ``expected`` after the resampler's lead of silence (a few
    samples), but for a few samples at the stream's very end."""
    n = len(expected) - 256
    if len(heard) < n + 256:
        return False
    head, tail = expected[:n].astype(np.float64), heard.astype(np.float64)
    lead = min(range(256), key=lambda k: float(np.sum((tail[k:k + n] - head) ** 2)))
    error = tail[lead:lead + n] - head
    return float(np.sqrt(np.mean(error ** 2))) < 0.01 * float(np.sqrt(np.mean(head ** 2)))


def test_a_device_that_refuses_24k_plays_at_a_service_rate_it_takes(
        rate_device: AlsaDevice, emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=rate_device.name)
    assert speaker.settings.sample_rate == 44100  # asked of the service: no resampling
    speaker.speak(TEXT)
    heard = rate_device.capture()
    assert heard.shape[1] == 1 and np.array_equal(heard[:, 0], _served(emulator))  # bit for bit


def test_an_explicit_rate_the_device_refuses_is_resampled(
        rate_device: AlsaDevice, emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=rate_device.name, sample_rate=24000)
    speaker.speak(TEXT)
    (run,) = rate_device.runs()
    assert run.rate == 44100
    expected = soxr.resample(_served(emulator), 24000, run.rate, quality="LQ")
    assert _close_to(run.frames[:, 0], expected), "what the device received is not the served speech"


def test_a_stereo_only_hdmi_device_gets_the_sound_on_both_channels(
        hdmi_device: AlsaDevice, emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    speaker = make_speaker(output=hdmi_device.name)
    assert speaker.settings.sample_rate == 24000  # it takes none of the service's rates: resampled
    speaker.speak(TEXT)
    heard = hdmi_device.capture()
    assert heard.shape[1] == 2 and np.array_equal(heard[:, 0], heard[:, 1])
    assert _close_to(heard[:, 0], soxr.resample(_served(emulator), 24000, 48000, quality="LQ"))


@pytest.mark.parametrize("sample_rate", [None, 24000])
def test_words_fire_when_the_device_plays_them(
        rate_device: AlsaDevice, emulator: Emulator, make_speaker: Callable[..., Speaker],
        sample_rate: int) -> None:
    fired: List[Tuple[float, WordEvent]] = []
    speaker = make_speaker(output=rate_device.name, sample_rate=sample_rate,
                           on_word=lambda event: fired.append((time.monotonic(), event)))
    speaker.speak("One two three four five six seven eight nine ten.")
    assert speaker.wait_idle(5)
    (run,) = rate_device.runs()
    late = [when - run.time(round(event.start * run.rate)) for when, event in fired]
    assert len(late) == 10
    assert abs(statistics.median(late)) < 0.015, late  # on the device's own clock
    assert max(abs(x) for x in late) < 0.040, late


def test_pause_and_interrupt_silence_a_resampled_device_at_once(
        rate_device: AlsaDevice, emulator: Emulator, make_speaker: Callable[..., Speaker]) -> None:
    started, wait = threading.Event(), threading.Event().wait  # (wait: let it play a while)
    speaker = make_speaker(output=rate_device.name, sample_rate=24000, on_start=lambda e: started.set())
    utterance = speaker.say("One two three four five six seven eight nine ten eleven twelve thirteen fourteen.")
    assert started.wait(5)
    wait(0.4)
    speaker.pause()
    paused_at = time.monotonic()
    wait(0.3)
    resumed_at = time.monotonic()
    speaker.resume()
    wait(0.4)
    speaker.interrupt()
    cut_at = time.monotonic()
    assert utterance.wait(5) and utterance.interrupted
    runs = rate_device.runs()
    times = np.concatenate([run.time_ns(0) / 1e9 + np.arange(run.played) / run.rate for run in runs])
    assert not np.any((times > paused_at + 0.030) & (times < resumed_at)), "sound went on after pause()"
    assert not np.any(times > cut_at + 0.030), "sound went on after interrupt()"
    heard = np.concatenate([run.heard[:, 0] for run in runs])
    speech = soxr.resample(_served(emulator), 24000, 44100, quality="LQ")
    # About 0.8 s was heard, in two stretches, and resume() went on where the pause stopped.
    assert 0.6 < len(heard) / 44100 < 1.2 and len(runs) >= 2
    seam, window = int(np.sum(times < resumed_at)), 13230  # 0.3 s after the resume: words and gaps
    after = heard[seam:seam + window].astype(np.float64)

    def mismatch(offset: int) -> float:
        return float(np.sqrt(np.mean((speech[offset:offset + window] - after) ** 2)))

    best = min(range(seam - 1764, seam + 221), key=mismatch)  # 40 ms back to 5 ms ahead
    # (The resumed stream starts at a fraction of a device sample from the reference's
    # grid, a few percent of difference on its own.)
    assert mismatch(best) < 0.1 * float(np.sqrt(np.mean(after ** 2))), "resume() did not go on from the pause"


def test_a_program_that_speaks_writes_nothing_to_stderr(emulator: Emulator) -> None:
    script = textwrap.dedent(f"""
        from smallest_sync import Speaker
        with Speaker("sk_quiet", base_url={emulator.base_url!r}) as speaker:
            speaker.speak("Not a word on stderr.")
        print("spoken")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "spoken", result.stderr
    assert result.stderr == ""


def test_scripts_say_plays_on_a_default_device_that_refuses_24k(rate_device: AlsaDevice, tmp_path: Path) -> None:
    # No sound server, only the test devices: PortAudio's default is then the first, usb48.
    env = {**os.environ, "PULSE_SERVER": "unix:/nonexistent/pulse/native",
           "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{ALSA_DIR / 'devices.conf'}"}
    result = subprocess.run([str(REPO / "scripts" / "say"), "Hello, USB speaker."], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "say.wav").exists() and "No sound device" not in result.stderr
    assert len(rate_device.capture()) > 44100 // 2, "nothing reached the device"


def test_a_device_name_matching_several_says_which_and_digits_are_an_index(
        rate_device: AlsaDevice, make_speaker: Callable[..., Speaker]) -> None:
    with pytest.raises(AudioDeviceError, match="matches several") as caught:
        make_speaker(output="s")  # usb48 and pulse ("48" would be an index)
    assert "usb48" in str(caught.value) and "pulse" in str(caught.value)
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        index = rate_device.index(pa)
    finally:
        pa.terminate()
    make_speaker(output=str(index)).speak("By its index.")
    assert len(rate_device.capture()) > 0
