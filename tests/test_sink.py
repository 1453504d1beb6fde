"""The real-audio test path itself: PyAudio's default device -> null sink -> parec.

Nothing is mocked: if these fail, every test that listens to playback is blind.
"""

from __future__ import annotations

import threading
import time
from typing import Tuple

import numpy as np
import pytest

from tests.sink import (
    SINK_RATE,
    SinkRecorder,
    active_regions,
    find_segment,
    require_sink,
)


def tone(
    rate: int,
    seconds: float,
    freqs: Tuple[float, ...] = (440.0,),
    amp: float = 0.4,
    fade: float = 0.0,
    seed: int = 7,
) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = np.zeros(len(t))
    for f in freqs:
        x += np.sin(2 * np.pi * f * t) * (amp * 32767 / len(freqs))
    if fade:
        k = int(fade * rate)
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k))
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    # A little seeded noise makes the waveform aperiodic, so an exact match
    # can only happen at one offset.
    x += np.random.default_rng(seed).integers(-40, 41, len(t))
    return np.round(x).astype(np.int16)


def play_default_device(pcm: np.ndarray, rate: int) -> float:
    """Play int16 mono on PortAudio's default output; returns when it was handed over."""
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        pa.get_default_output_device_info()  # raises OSError if there is none
        stream = pa.open(format=pyaudio.paInt16, channels=1, rate=rate, output=True)
        try:
            started = time.monotonic()
            stream.write(pcm.tobytes())
            # stop_stream() does not drain (measured: it returns in <1 ms and the
            # last ~get_output_latency() of audio is never heard), so push that
            # much silence behind the sound before stopping.
            pad = int((stream.get_output_latency() + 0.05) * rate)
            stream.write(np.zeros(pad, np.int16).tobytes())
            stream.stop_stream()
        finally:
            stream.close()
    finally:
        pa.terminate()
    return started


# -- real playback --------------------------------------------------------------
def test_default_device_is_recorded_bit_exactly(sink_recorder: SinkRecorder) -> None:
    sound = tone(SINK_RATE, 0.5)
    handed_over = play_default_device(sound, SINK_RATE)
    rec = sink_recorder.stop(tail=0.05)

    at = find_segment(rec, sound, exact=True)
    assert at is not None, "tone not found bit-exactly in the recording"
    end = at + len(sound)
    # Before and after: the null sink's silence, exact zeros.
    assert at > 0 and not rec[:at].any()
    assert len(rec) - end > 0.05 * SINK_RATE and not rec[end:].any()
    # The correlation path finds the same place.
    assert find_segment(rec, sound, exact=False) == at

    regions = active_regions(rec, SINK_RATE, threshold=100)
    assert len(regions) == 1
    start_s, end_s = regions[0]
    assert start_s == pytest.approx(at / SINK_RATE, abs=0.002)
    assert end_s == pytest.approx(end / SINK_RATE, abs=0.002)

    # Recording time tracks wall time: the sound lands where index_at() says
    # (measured 0..8 ms early; the bound is loose so a busy machine passes).
    delay = (at - sink_recorder.index_at(handed_over)) / SINK_RATE
    assert -0.05 < delay < 0.3, delay


def test_other_rates_are_resampled_but_found_by_correlation(sink_recorder: SinkRecorder) -> None:
    rate = 44100
    sound = tone(rate, 0.4, freqs=(440.0, 3000.0), fade=0.01)
    play_default_device(sound, rate)
    rec = sink_recorder.stop(tail=0.3)  # room for the device latency, also under load

    n = int(round(len(sound) * SINK_RATE / rate))
    expected = np.interp(np.arange(n) * rate / SINK_RATE, np.arange(len(sound)), sound.astype(float))
    assert find_segment(rec, expected.astype(np.int16), exact=True) is None
    at = find_segment(rec, expected, exact=False, threshold=0.999)
    assert at is not None
    assert len(active_regions(rec, SINK_RATE, threshold=200)) == 1


def test_recorder_starts_stops_and_cleans_up() -> None:
    require_sink()
    before = {t.name for t in threading.enumerate()}
    with SinkRecorder() as rec:
        assert rec.samples > 0  # start() waited for audio to flow
        assert "sink-recorder-parec" in {t.name for t in threading.enumerate()}
        # tail makes stop() record that much more, without sleeping.
        first = rec.stop(tail=0.2)
        proc = rec._proc
        assert proc is not None and proc.returncode is not None
        assert first.dtype == np.int16 and len(first) >= 0.2 * SINK_RATE
        assert rec.stop() is first  # idempotent
    assert {t.name for t in threading.enumerate()} == before


def test_recorder_start_fails_clearly_on_a_missing_device() -> None:
    require_sink()
    rec = SinkRecorder(sink="no_such_sink")
    with pytest.raises(RuntimeError, match="no_such_sink.monitor"):
        rec.start(timeout=5)
    rec.close()
    assert not any(t.name == "sink-recorder-parec" for t in threading.enumerate())


# -- helpers, on synthetic data -------------------------------------------------------
def test_find_segment_exact() -> None:
    sound = tone(SINK_RATE, 0.1)
    rec = np.zeros(SINK_RATE, np.int16)
    rec[1234 : 1234 + len(sound)] = sound
    assert find_segment(rec, sound) == 1234
    rec[1300] ^= 1
    assert find_segment(rec, sound) is None
    assert find_segment(sound[:10], sound) is None
    with pytest.raises(ValueError):
        find_segment(rec, np.zeros(10, np.int16))


def test_find_segment_by_correlation() -> None:
    sound = tone(SINK_RATE, 0.1)
    rec = np.random.default_rng(1).integers(-50, 50, SINK_RATE).astype(np.int16)
    rec[5000 : 5000 + len(sound)] += (sound // 2).astype(np.int16)
    assert find_segment(rec, sound, exact=True) is None
    assert find_segment(rec, sound, exact=False) == 5000
    other = tone(SINK_RATE, 0.1, freqs=(1234.0,), seed=3)
    assert find_segment(rec, other, exact=False) is None


def test_active_regions() -> None:
    rate = 1000
    rec = np.zeros(rate, np.int16)
    rec[100:200] = 5000
    rec[150:160] = 0  # a 10 ms dip: same region
    rec[500:600] = -5000
    assert active_regions(rec, rate, threshold=100) == [(0.1, 0.2), (0.5, 0.6)]
    assert active_regions(np.zeros(10, np.int16), rate) == []
