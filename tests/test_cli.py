"""``smallest-say`` run as a user runs it (a subprocess), against the emulator: every flag
and every exit code. Speech goes to a WAV file here (``--out``); playing on a device,
stdin pipes kept open and Ctrl-C are in test_cli_live.py."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import wave
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

from smallest_sync import __version__
from smallest_sync.emulator import Emulator, EmulatorConfig

from .conftest import API_KEY

REPO = Path(__file__).resolve().parent.parent
# No sound server, and only ALSA's stock configuration (not the test devices' one).
NO_SOUND_CARD = {"PULSE_SERVER": "unix:/nonexistent/pulse/native", "ALSA_CONFIG_PATH": "/usr/share/alsa/alsa.conf"}
KEY = {"SMALLEST_API_KEY": API_KEY}


def run(args: List[str], *, env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None,
        command: Optional[List[str]] = None, input: Optional[str] = None,
        stdin: Optional[int] = subprocess.DEVNULL) -> subprocess.CompletedProcess:
    """Run smallest-say (or ``command``) to the end; stdin is /dev/null unless ``input`` is given."""
    environment = {k: v for k, v in os.environ.items() if k != "SMALLEST_API_KEY"}
    environment.update(env or {})
    return subprocess.run((command or [sys.executable, "-m", "smallest_sync"]) + args, env=environment,
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          input=input, stdin=None if input is not None else stdin)


def read_wav(path: Path, rate: int = 24000) -> np.ndarray:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, rate)
        return np.frombuffer(wav.readframes(wav.getnframes()), "<i2")


def requests(emulator: Emulator) -> List[dict]:
    """The synthesis requests the emulator received (keepalives left out)."""
    return [r.message for r in emulator.received if r.message and str(r.message.get("text", "")).strip()]


def texts(emulator: Emulator) -> List[str]:
    return [r["text"] for r in requests(emulator)]


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single error line a failed run printed (and nothing else, no traceback)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("smallest-say: error: "), result.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----- speaking --------------------------------------------------------------------

def test_emulator_to_a_wav_file(tmp_path: Path) -> None:
    result = run(["--emulator", "--out", str(tmp_path / "hello.wav"), "Hello from the command line."])
    assert result.returncode == 0, result.stderr
    samples = read_wav(tmp_path / "hello.wav")
    assert len(samples) > 24000 and np.abs(samples).max() > 1000
    assert "wrote" in result.stderr


def test_text_arguments_are_one_request_per_sentence(emulator: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    result = run(["--base-url", emulator.base_url, "-o", str(out), "One.", "Two", "two.", "Three?"], env=KEY)
    assert result.returncode == 0, result.stderr
    assert texts(emulator) == ["One.", "Two two.", "Three?"]
    served = np.concatenate([s.pcm for s in emulator.served])
    assert np.array_equal(read_wav(out), served), "the file holds exactly the audio served"


def test_voice_model_language_speed_and_rate_reach_the_service(emulator: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    result = run(["--base-url", emulator.base_url, "--out", str(out), "--voice", "liam", "--model", "lightning_v3.1",
                  "--language", "hi", "--speed", "1.5", "--sample-rate", "16000", "Namaste."], env=KEY)
    assert result.returncode == 0, result.stderr
    [request] = requests(emulator)
    assert (request["voice_id"], request["model"], request["language"], request["speed"], request["sample_rate"]) == \
        ("liam", "lightning_v3.1", "hi", 1.5, 16000)
    assert len(read_wav(out, rate=16000)) > 0


def test_a_file_is_spoken_in_sentences_of_at_most_250_characters(emulator: Emulator, tmp_path: Path) -> None:
    long_sentence = "This sentence rambles on, " * 15 + "and ends here."  # ~400 characters
    story = tmp_path / "story.txt"
    story.write_text("\ufeffChapter One\n\nIt was a dark\nand stormy night. The wind\nhowled.\n\n"
                     f"{long_sentence}\n", encoding="utf-8")
    result = run(["--base-url", emulator.base_url, "-o", str(tmp_path / "o.wav"), "-f", str(story), "--progress"],
                 env=KEY)
    assert result.returncode == 0, result.stderr
    sent = texts(emulator)
    assert sent[:3] == ["Chapter One", "It was a dark and stormy night.", "The wind howled."]
    assert all(len(text) <= 250 and "\n" not in text for text in sent)
    assert " ".join(sent[3:]) == long_sentence and len(sent) > 4
    # The forced progress line: one per sentence, as it starts to be heard, out of the total.
    progress = [line for line in result.stderr.splitlines() if line.startswith("sentence ")]
    assert [line.split(",")[0] for line in progress] == [f"sentence {n}/{len(sent)}" for n in range(1, len(sent) + 1)]
    assert all(re.fullmatch(r"sentence \d+/\d+, \d+:\d\d heard", line) for line in progress), progress


def test_no_progress_line_unless_asked_when_stderr_is_not_a_terminal(emulator: Emulator, tmp_path: Path) -> None:
    story = tmp_path / "story.txt"
    story.write_text("One. Two. Three.", encoding="utf-8")
    for flags in ([], ["--no-progress"]):
        result = run(["--base-url", emulator.base_url, "-o", str(tmp_path / "o.wav"), "-f", str(story), *flags],
                     env=KEY)
        assert result.returncode == 0, result.stderr
        assert "sentence" not in result.stderr


@pytest.mark.parametrize("how", ["dash", "pipe"])
def test_stdin_is_one_utterance_per_line_blank_lines_skipped(emulator: Emulator, tmp_path: Path, how: str) -> None:
    args = ["--base-url", emulator.base_url, "-o", str(tmp_path / "o.wav"), "--captions", "--progress"]
    result = run(args + (["-"] if how == "dash" else []), env=KEY, input="First line.\n\n   \nSecond line\r\nlast")
    assert result.returncode == 0, result.stderr
    assert texts(emulator) == ["First line.", "Second line", "last"]
    assert result.stdout.splitlines() == ["First line.", "Second line", "last"]
    assert [line.split(",")[0] for line in result.stderr.splitlines() if line.startswith("line ")] == \
        ["line 1", "line 2", "line 3"]


def test_captions_print_each_word_once_written_to_a_file(emulator: Emulator, tmp_path: Path) -> None:
    result = run(["--base-url", emulator.base_url, "-o", str(tmp_path / "o.wav"), "--captions",
                  "Hello there, friend. How are you?"], env=KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello there, friend.\nHow are you?\n"
    served_words = [word for served in emulator.served for word, _, _ in served.words]
    assert served_words == "Hello there, friend. How are you?".split(), "captions came from word events"


def test_captions_for_a_voice_without_word_timings_are_whole_sentences(emulator: Emulator, tmp_path: Path) -> None:
    result = run(["--base-url", emulator.base_url, "-o", str(tmp_path / "o.wav"), "--captions", "--voice", "sophia",
                  "No timings here. Still captioned."], env=KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "No timings here.\nStill captioned.\n"


# ----- listing -----------------------------------------------------------------------

def test_list_voices_from_the_bundled_emulator() -> None:
    result = run(["--emulator", "--list-voices"])
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "GENDER", "ACCENT", "AGE", "LANGUAGES"]
    meher = next(row for row in rows if " meher " in row)
    assert meher.startswith("*") and "female" in meher and "english, hindi" in meher  # the pro model's default


def test_list_voices_of_the_chosen_model_from_the_service(emulator: Emulator) -> None:
    result = run(["--base-url", emulator.base_url, "--list-voices", "--model", "lightning_v3.1"], env=KEY)
    assert result.returncode == 0, result.stderr
    assert [h.path for h in emulator.handshakes] == ["/waves/v1/lightning-v3.1/get_voices"]
    assert next(row for row in result.stdout.splitlines() if row.startswith("*")).split()[1] == "sophia"


def test_list_devices_shows_the_default() -> None:
    result = run(["--list-devices"])
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("*") for line in result.stdout.splitlines())


def test_version_and_help() -> None:
    version = run(["--version"])
    assert version.returncode == 0 and version.stdout.strip() == f"smallest-say {__version__}"
    helped = run(["--help"])
    assert helped.returncode == 0
    for flag in ("--voice", "--model", "--language", "--speed", "--sample-rate", "--device", "--list-devices",
                 "--list-voices", "--out", "--emulator", "--captions", "--progress", "-f FILE", "130 Ctrl-C"):
        assert flag in helped.stdout, flag


# ----- exit codes --------------------------------------------------------------------

@pytest.mark.parametrize("args, says", [
    ([], "nothing to say"),
    (["--bogus", "x"], "unrecognized arguments: --bogus"),
    (["--speed", "9", "Too fast."], "speed must be between 0.5 and 2.0"),
    (["--speed", "fast", "x"], "speed must be a number"),
    (["--sample-rate", "22050", "x"], "--sample-rate"),
    (["--model", "lightning_v9", "x"], "--model"),
    (["--language", "xx", "x"], "--language"),
    (["--emulator", "--voice", "not a voice!", "x"], "voice must be a voice id"),
    (["-f", "/nonexistent/story.txt"], "cannot read /nonexistent/story.txt"),
    (["-f", "/dev/null", "and text"], "not both"),
    (["-", "and text"], "cannot be mixed"),
    (["--emulator", "--device", "1", "--out", "x.wav", "x"], "not allowed with"),
    (["--emulator", "--out", "/nonexistent/dir/x.wav", "x"], "cannot write WAV file"),
    (["--base-url", "http://example.com", "x"], "base_url must be a ws:// or wss:// URL"),
    (["--device", "", "x"], "device must be"),
])
def test_usage_errors_exit_2_with_one_line(args: List[str], says: str) -> None:
    result = run(args, env=KEY)
    assert result.returncode == 2, result.stderr
    assert says in one_line_error(result)


def test_empty_stdin_is_a_usage_error(emulator: Emulator) -> None:
    result = run(["--base-url", emulator.base_url, "-o", os.devnull + ".wav"], env=KEY, input="\n  \n")
    assert result.returncode == 2
    assert "nothing to say" in one_line_error(result)


@pytest.mark.parametrize("key", [None, "   "])
def test_without_a_key_it_says_how_to_get_one(key: Optional[str]) -> None:
    result = run(["Hello."], env=None if key is None else {"SMALLEST_API_KEY": key})
    assert result.returncode == 3
    line = one_line_error(result)
    assert "SMALLEST_API_KEY" in line and "--emulator" in line


@pytest.mark.parametrize("listing", [False, True])
def test_a_refused_key_exits_3_without_leaking_it(listing: bool, tmp_path: Path) -> None:
    args = ["--list-voices"] if listing else ["-o", str(tmp_path / "o.wav"), "Hello."]
    with Emulator(EmulatorConfig(refuse_auth=True)) as emulator:
        result = run(["--base-url", emulator.base_url, *args], env={"SMALLEST_API_KEY": "sk_wrong_secret"})
    assert result.returncode == 3
    line = one_line_error(result)
    assert "refused the API key" in line and "sk_wrong_secret" not in result.stderr + result.stdout


@pytest.mark.parametrize("listing", [False, True])
def test_an_unreachable_service_exits_5(listing: bool, tmp_path: Path) -> None:
    args = ["--list-voices"] if listing else ["-o", str(tmp_path / "o.wav"), "Hello."]
    result = run(["--base-url", f"ws://127.0.0.1:{closed_port()}", *args], env=KEY)
    assert result.returncode == 5, result.stderr
    assert "Connection refused" in one_line_error(result)


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    result = run(["-v", "--base-url", f"ws://127.0.0.1:{closed_port()}", "-o", str(tmp_path / "o.wav"), "Hello."],
                 env=KEY)
    assert result.returncode == 5
    assert "Traceback" in result.stderr and result.stderr.rstrip().splitlines()[-1].startswith("smallest-say: error:")


@pytest.mark.parametrize("shape", ["message", "object"])
def test_a_service_error_exits_6_with_its_message(shape: str, tmp_path: Path) -> None:
    config = EmulatorConfig(realtime_factor=0, fault="error", error_shape=shape)  # type: ignore[arg-type]
    with Emulator(config) as emulator:
        result = run(["--base-url", emulator.base_url, "-o", str(tmp_path / "o.wav"), "Hello."], env=KEY)
    assert result.returncode == 6
    assert "Emulated synthesis failure" in one_line_error(result)


@pytest.mark.parametrize("device", ["no such device", "999"])
def test_an_unknown_device_exits_4_and_points_to_the_list(device: str) -> None:
    result = run(["--emulator", "--device", device, "Hello."])
    assert result.returncode == 4, result.stderr
    assert "--list-devices" in one_line_error(result)


def test_no_sound_device_exits_4_with_one_line() -> None:
    result = run(["--emulator", "Hello."], env=NO_SOUND_CARD)
    assert result.returncode == 4, result.stderr
    one_line_error(result)


def test_an_unreadable_stdin_exits_1(tmp_path: Path) -> None:
    write_only = os.open(tmp_path / "w", os.O_WRONLY | os.O_CREAT)
    try:
        result = run(["--emulator", "-o", str(tmp_path / "o.wav"), "-"], stdin=write_only)
    finally:
        os.close(write_only)
    assert result.returncode == 1, result.stderr
    assert "cannot read stdin" in one_line_error(result)


@pytest.mark.parametrize("args", [["--list-voices"], ["--captions", "-o", os.devnull + ".wav", "One. Two."]])
def test_a_reader_that_goes_away_is_not_an_error_message(args: List[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "smallest_sync", "--emulator", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # like `| head -0`
    _, stderr = proc.communicate(timeout=120)
    assert "Error" not in stderr and "Traceback" not in stderr, stderr
    assert proc.returncode == (1 if "--list-voices" in args else 0), "speech goes on without its captions"


# ----- the README's commands -----------------------------------------------------------

def test_readme_say_command_writes_a_wav_without_a_sound_card(tmp_path: Path) -> None:
    result = run(["Hello, nobody."], command=[str(REPO / "scripts" / "say")], cwd=tmp_path, env=NO_SOUND_CARD)
    assert result.returncode == 0, result.stderr
    assert "say.wav" in result.stderr
    assert np.abs(read_wav(tmp_path / "say.wav")).max() > 1000


def test_readme_say_command_keeps_a_bad_device_an_error(tmp_path: Path) -> None:
    result = run(["--device", "no such device", "Hello."], command=[str(REPO / "scripts" / "say")], cwd=tmp_path)
    assert result.returncode == 4
    assert not (tmp_path / "say.wav").exists()
