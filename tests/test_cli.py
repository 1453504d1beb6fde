"""``smallest-say`` and the README's ``scripts/say``, run as a user would run them."""
from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from smallest_sync.emulator import Emulator, EmulatorConfig

from .sink import SinkRecorder, active_regions

REPO = Path(__file__).resolve().parent.parent


def run(args: List[str], *, env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None,
        command: Optional[List[str]] = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "SMALLEST_API_KEY"}
    environment.update(env or {})
    return subprocess.run((command or [sys.executable, "-m", "smallest_sync"]) + args, env=environment,
                          cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        return np.frombuffer(wav.readframes(wav.getnframes()), "<i2")


NO_SOUND_CARD = {"PULSE_SERVER": "unix:/nonexistent/pulse/native"}


def test_emulator_to_a_wav_file(tmp_path: Path) -> None:
    result = run(["--emulator", "--out", str(tmp_path / "hello.wav"), "Hello from the command line."])
    assert result.returncode == 0, result.stderr
    samples = read_wav(tmp_path / "hello.wav")
    assert len(samples) > 24000 and np.abs(samples).max() > 1000


def test_emulator_plays_through_the_default_device(sink_recorder: SinkRecorder) -> None:
    result = run(["--emulator", "Hello speakers."])
    recording = sink_recorder.stop(tail=0.2)
    assert result.returncode == 0, result.stderr
    assert active_regions(recording, 24000), "nothing was heard"


def test_without_a_key_it_says_how_to_get_one() -> None:
    result = run(["Hello."])
    assert result.returncode == 3
    assert "SMALLEST_API_KEY" in result.stderr and "--emulator" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_refused_key_exits_3_without_leaking_it() -> None:
    with Emulator(EmulatorConfig(realtime_factor=0), api_key="sk_right") as emulator:
        result = run(["--base-url", emulator.base_url, "Hello."], env={"SMALLEST_API_KEY": "sk_wrong_secret"})
    assert result.returncode == 3
    assert "refused the API key" in result.stderr and "sk_wrong_secret" not in result.stderr


def test_usage_errors_exit_2() -> None:
    assert run([]).returncode == 2
    bad_speed = run(["--emulator", "--speed", "9", "Too fast."])
    assert bad_speed.returncode == 2 and "speed" in bad_speed.stderr
    assert run(["--sample-rate", "22050", "x"]).returncode == 2


def test_unreachable_service_exits_5() -> None:
    result = run(["--base-url", "ws://127.0.0.1:9", "Hello."], env={"SMALLEST_API_KEY": "sk_test"})
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_no_sound_device_exits_4_with_one_line() -> None:
    result = run(["--emulator", "Hello."], env=NO_SOUND_CARD)
    assert result.returncode == 4, result.stderr
    assert "smallest-say:" in result.stderr and "Traceback" not in result.stderr


def test_list_devices_shows_the_default() -> None:
    result = run(["--list-devices"])
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("*") for line in result.stdout.splitlines())


def test_readme_say_command_speaks_offline(sink_recorder: SinkRecorder, tmp_path: Path) -> None:
    result = run(["Hello from the README."], command=[str(REPO / "scripts" / "say")], cwd=tmp_path)
    recording = sink_recorder.stop(tail=0.2)
    assert result.returncode == 0, result.stderr
    assert "emulator" in result.stderr
    assert active_regions(recording, 24000)


def test_readme_say_command_writes_a_wav_without_a_sound_card(tmp_path: Path) -> None:
    result = run(["Hello, nobody."], command=[str(REPO / "scripts" / "say")], cwd=tmp_path, env=NO_SOUND_CARD)
    assert result.returncode == 0, result.stderr
    assert "say.wav" in result.stderr
    assert np.abs(read_wav(tmp_path / "say.wav")).max() > 1000


def test_hello_sample_speaks_offline(sink_recorder: SinkRecorder) -> None:
    result = run(["--emulator"], command=[sys.executable, str(REPO / "samples" / "hello.py")])
    recording = sink_recorder.stop(tail=0.2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("spoke ")
    assert active_regions(recording, 24000)
