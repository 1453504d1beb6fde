"""The test rig itself, with plain PyAudio: the ALSA test devices (tests/devices.py)
and the route of PortAudio's default device on the sound server of this run.

scripts/test runs these on PulseAudio and again on PipeWire (all are marked
``device``). If they fail, the tests that use the rig are blind.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any, Iterator, Tuple

import numpy as np
import pytest

from tests.devices import (
    SERVER_ENV,
    STEP_S,
    AlsaDevice,
    Run,
    alsa_pcm_description,
    hdmi_device,  # noqa: F401  (fixture)
    rate_device,  # noqa: F401  (fixture)
)
from tests.sink import SINK_RATE, SinkRecorder, find_segment, sink_recorder  # noqa: F401

pytestmark = pytest.mark.device

PA_INVALID_SAMPLE_RATE = -9997
PA_INVALID_CHANNEL_COUNT = -9998


def tone(rate: int, seconds: float, freq: float = 440.0, seed: int = 7) -> np.ndarray:
    """A sine with a little seeded noise, so an exact match fits at one offset only."""
    t = np.arange(int(rate * seconds)) / rate
    x = np.sin(2 * np.pi * freq * t) * 12000 + np.random.default_rng(seed).integers(-40, 41, len(t))
    return np.round(x).astype(np.int16)


@pytest.fixture
def pa() -> Iterator[Any]:
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        yield pa
    finally:
        pa.terminate()


def play(pa: Any, device: AlsaDevice, pcm: np.ndarray, rate: int, **options: Any) -> Tuple[int, int]:
    """Write ``pcm`` ((frames,) or (frames, channels) int16), then enough silence
    that all of it is heard before ``stop_stream()`` drops the rest.
    Returns monotonic ns just before the first write and after the last sound."""
    import pyaudio

    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    stream = pa.open(format=pyaudio.paInt16, channels=channels, rate=rate, output=True,
                     output_device_index=device.index(pa), **options)
    try:
        before = time.monotonic_ns()
        stream.write(pcm.tobytes())
        after = time.monotonic_ns()
        pad = int((stream.get_output_latency() + 0.05) * rate)
        stream.write(np.zeros((pad, channels), np.int16).tobytes())
        stream.stop_stream()
    finally:
        stream.close()
    return before, after


def only_run(device: AlsaDevice) -> Run:
    runs = device.runs()
    assert len(runs) == 1, [(r.id, r.received, r.end) for r in runs]
    return runs[0]


# -- what the devices take ----------------------------------------------------------
def test_the_devices_are_there_only_for_tests_that_ask_for_them(pa: Any) -> None:
    # Elsewhere PortAudio must not see them: with the sound server gone it would
    # take one as its default output instead of having none.
    names = {pa.get_device_info_by_index(i)["name"] for i in range(pa.get_device_count())}
    assert not names & {"usb48", "hdmi48"}


def test_the_devices_are_listed_as_outputs(rate_device: AlsaDevice, hdmi_device: AlsaDevice, pa: Any) -> None:
    for device, channels in ((rate_device, 2), (hdmi_device, 2)):
        info = pa.get_device_info_by_index(device.index(pa))
        assert info["maxOutputChannels"] == channels
        assert info["maxInputChannels"] == 0
        assert pa.get_host_api_info_by_index(info["hostApi"])["name"] == "ALSA"


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 32000, 96000])
def test_other_rates_are_refused_with_invalid_sample_rate(rate_device: AlsaDevice, pa: Any, rate: int) -> None:
    import pyaudio

    index = rate_device.index(pa)
    with pytest.raises(ValueError) as refused:
        pa.is_format_supported(rate, output_device=index, output_channels=1, output_format=pyaudio.paInt16)
    assert refused.value.args[1] == PA_INVALID_SAMPLE_RATE
    with pytest.raises(OSError) as failed:
        pa.open(format=pyaudio.paInt16, channels=1, rate=rate, output=True, output_device_index=index)
    assert failed.value.errno == PA_INVALID_SAMPLE_RATE
    assert len(rate_device.capture()) == 0


def test_44100_and_48000_mono_and_stereo_are_accepted(rate_device: AlsaDevice, pa: Any) -> None:
    import pyaudio

    index = rate_device.index(pa)
    for rate in (44100, 48000):
        for channels in (1, 2):
            assert pa.is_format_supported(rate, output_device=index, output_channels=channels,
                                          output_format=pyaudio.paInt16)


def test_hdmi_takes_48000_only(hdmi_device: AlsaDevice, pa: Any) -> None:
    import pyaudio

    index = hdmi_device.index(pa)
    assert pa.is_format_supported(48000, output_device=index, output_channels=2, output_format=pyaudio.paInt16)
    for rate in (44100, 24000):
        with pytest.raises(ValueError) as refused:
            pa.is_format_supported(rate, output_device=index, output_channels=2, output_format=pyaudio.paInt16)
        assert refused.value.args[1] == PA_INVALID_SAMPLE_RATE
    with pytest.raises(ValueError) as too_many:
        pa.is_format_supported(48000, output_device=index, output_channels=6, output_format=pyaudio.paInt16)
    assert too_many.value.args[1] == PA_INVALID_CHANNEL_COUNT


# -- what the devices record, and when ------------------------------------------------
def test_a_tone_at_48000_comes_back_exactly_and_in_real_time(rate_device: AlsaDevice, pa: Any) -> None:
    rate = 48000
    sound = tone(rate, 0.5)
    before, after = play(pa, rate_device, sound, rate, frames_per_buffer=480)

    run = only_run(rate_device)
    assert (run.rate, run.channels) == (rate, 1)
    assert np.array_equal(run.frames[: len(sound), 0], sound)
    assert not run.frames[len(sound):].any()  # then only the padding
    assert np.array_equal(rate_device.capture(), run.frames)
    assert run.played >= len(sound) and run.end == "stop"

    # Frame k plays at start + k / rate, and the start lies inside the writes.
    assert run.start_ns is not None and before <= run.start_ns <= after
    assert rate_device.time_of(len(sound) - 1) == pytest.approx(run.start_ns / 1e9 + (len(sound) - 1) / rate)
    # A blocking write cannot run ahead of playback by more than the buffer.
    assert after - run.start_ns >= (len(sound) - run.buffer) * 1e9 / rate
    # Every logged pointer lags the clock by less than one 1 ms step, and never
    # passes what was written.
    step = rate * STEP_S
    for ev in run.events:
        if ev.event in ("write", "stop") and ev.t_ns >= run.start_ns:
            due = (ev.t_ns - run.start_ns) * rate / 1e9
            assert due - step - 1 <= ev.hw <= due, ev
            assert ev.hw <= ev.frames, ev


def test_stereo_at_44100_keeps_the_channels_apart(rate_device: AlsaDevice, pa: Any) -> None:
    rate = 44100
    sound = np.stack([tone(rate, 0.3, 440.0), tone(rate, 0.3, 1000.0, seed=3)], axis=1)
    play(pa, rate_device, sound, rate)

    run = only_run(rate_device)
    assert (run.rate, run.channels) == (rate, 2)
    assert np.array_equal(run.frames[: len(sound)], sound)
    assert run.played >= len(sound)


def test_hdmi_records_48000_stereo(hdmi_device: AlsaDevice, pa: Any) -> None:
    sound = np.stack([tone(48000, 0.2), -tone(48000, 0.2)], axis=1)
    play(pa, hdmi_device, sound, 48000)
    assert np.array_equal(hdmi_device.capture()[: len(sound)], sound)


def test_mono_on_the_stereo_only_device_is_doubled_by_portaudio(hdmi_device: AlsaDevice, pa: Any) -> None:
    # As on a real stereo-only card: PortAudio opens it with 2 channels and
    # copies the one it is given into both.
    sound = tone(48000, 0.2)
    play(pa, hdmi_device, sound, 48000)
    run = only_run(hdmi_device)
    assert run.channels == 2
    assert np.array_equal(run.frames[: len(sound)], np.stack([sound, sound], axis=1))


def test_an_underrun_stops_the_device_until_it_is_fed_again(rate_device: AlsaDevice, pa: Any) -> None:
    import pyaudio

    rate = 48000
    first, second = tone(rate, 0.1), tone(rate, 0.1, 660.0, seed=3)
    stream = pa.open(format=pyaudio.paInt16, channels=1, rate=rate, output=True,
                     output_device_index=rate_device.index(pa), frames_per_buffer=480)
    try:
        stream.write(first.tobytes())
        time.sleep(0.3)  # a late producer: the device's ~20 ms buffer runs dry
        stream.write(second.tobytes())
        stream.write(np.zeros(int((stream.get_output_latency() + 0.05) * rate), np.int16).tobytes())
        stream.stop_stream()
    finally:
        stream.close()

    runs = rate_device.runs()
    assert len(runs) == 2, [(r.id, r.received, r.end) for r in runs]
    dry, fed = runs
    # Everything written before the gap played, then the device stopped when it
    # ran dry (not later: it plays in real time), until PortAudio restarted it.
    assert dry.end == "xrun" and dry.played == dry.received == len(first)
    assert dry.start_ns is not None and dry.end_ns == dry.start_ns + -(-len(first) * 10**9 // rate)
    assert fed.start_ns is not None and fed.start_ns - dry.end_ns > 0.2e9
    assert np.array_equal(rate_device.capture()[: len(first) + len(second), 0], np.concatenate([first, second]))
    assert rate_device.time_of(len(first)) == fed.time(0)


def test_close_drops_what_is_buffered_at_once(rate_device: AlsaDevice, pa: Any) -> None:
    import pyaudio

    rate = 48000
    stream = pa.open(format=pyaudio.paInt16, channels=1, rate=rate, output=True,
                     output_device_index=rate_device.index(pa), frames_per_buffer=4800)
    try:
        stream.write(tone(rate, 0.15).tobytes())  # fits in the 200+ ms buffer
    finally:
        closing = time.monotonic_ns()
        stream.close()
        closed = time.monotonic_ns()

    run = only_run(rate_device)
    assert run.end == "stop" and run.end_ns is not None and closing <= run.end_ns <= closed
    # Dropped, not drained: most of the tone was never heard.
    assert run.received - run.played > 0.05 * rate, (run.received, run.played)
    assert rate_device.time_of(run.received - 1) is None
    assert closed - closing < 1e9


# -- PortAudio's default device on this run's sound server ----------------------------------
def test_the_default_device_plays_through_this_runs_sound_server(sink_recorder: SinkRecorder) -> None:
    import pyaudio

    server = os.environ.get(SERVER_ENV)
    if server not in ("pulseaudio", "pipewire"):
        pytest.skip(f"{SERVER_ENV} is {server!r}: run scripts/test, or eval scripts/pulse.sh or pipewire.sh env")
    plugin = {"pulseaudio": "PulseAudio", "pipewire": "PipeWire"}[server]
    assert plugin in alsa_pcm_description("default")
    info = subprocess.run(["pactl", "info"], capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL, check=True).stdout
    assert ("on PipeWire" in info) == (server == "pipewire"), info

    sound = tone(SINK_RATE, 0.3)
    pa = pyaudio.PyAudio()
    try:
        stream = pa.open(format=pyaudio.paInt16, channels=1, rate=SINK_RATE, output=True)
        try:
            stream.write(sound.tobytes())
            stream.write(np.zeros(int((stream.get_output_latency() + 0.05) * SINK_RATE), np.int16).tobytes())
            stream.stop_stream()
        finally:
            stream.close()
    finally:
        pa.terminate()
    rec = sink_recorder.stop(tail=0.05)
    assert find_segment(rec, sound, exact=True) is not None, f"not bit-exact through {plugin}"
