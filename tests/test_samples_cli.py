"""The command-line samples, run as a user runs them: real subprocesses, the bundled emulator, real audio.

``pi_assistant.py --smoke FILE`` presses its talk key from a script (ask for a story, barge
in after a few words, pause, "Stop.", press and say nothing, ask about the weather, quit)
and writes what happened to FILE; here we check that record, its captions, and what the
PulseAudio null sink heard meanwhile. The keyboard is driven through a pipe, as typed.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from .sink import SinkRecorder, active_regions, require_sink

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 90.0  # generous: a run takes about 15 s


def sample_command(sample: str, *args: str) -> List[str]:
    return [sys.executable, str(REPO / "samples" / f"{sample}.py"), *args]


def environment() -> Dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SMALLEST_API_KEY"}  # --emulator only


def run_sample(sample: str, *args: str) -> subprocess.CompletedProcess[str]:
    require_sink()  # the samples play on the default device, the null sink here
    return subprocess.run(sample_command(sample, *args), env=environment(), capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def assistant_args(tmp_path: Path, *more: str) -> List[str]:
    # Each run has its own emulator (a new port): cached phrases must still be found.
    return ["--emulator", "--cache-dir", str(tmp_path / "phrases"), *more]


def smoke(tmp_path: Path, name: str, *more: str) -> Dict[str, Any]:
    report = tmp_path / f"{name}.json"
    result = run_sample("pi_assistant", *assistant_args(tmp_path, "--smoke", str(report), *more))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    seen: Dict[str, Any] = json.loads(report.read_text())
    seen["stdout"] = result.stdout
    return seen


def prompts(seen: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [event for event in seen["events"] if event["event"] == "prompt"]


def load_pi_assistant() -> Any:
    spec = importlib.util.spec_from_file_location("pi_assistant", REPO / "samples" / "pi_assistant.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(240)
def test_pi_assistant_caches_prompts_barges_in_at_once_and_replays_prompts_next_run(
        tmp_path: Path, sink_recorder: SinkRecorder) -> None:
    first = smoke(tmp_path, "first")
    recording = sink_recorder.stop()

    said = [(p["text"], p["cached"]) for p in prompts(first)]
    assert said == [("Yes?", False), ("Okay, stopping.", False), ("Yes?", True),  # said before in this run
                    ("Sorry, I didn't catch that.", False), ("Yes?", True), ("Goodbye!", False)]
    assert not any(p["interrupted"] for p in prompts(first))

    story, weather = first["replies"]
    assert story["interrupted"] and len(story["words"]) >= 3
    assert story["words"] == story["answer"].split()[:len(story["words"])]  # heard from the start, in order
    assert len(story["words"]) < len(story["answer"].split())  # ... and cut short
    assert not weather["interrupted"] and weather["words"] == weather["answer"].split()
    assert "assistant: " + " ".join(weather["words"]) in first["stdout"]  # the captions as printed
    assert f"assistant: {' '.join(story['words'])} [interrupted]" in first["stdout"]

    # Heard while the story played; silent from the barge-in until the next question was heard.
    events = first["events"]
    barge = next(i for i, event in enumerate(events) if event["event"] == "barge-in")
    asked, pressed, heard_next = events[barge - 1], events[barge], events[barge + 1]
    assert (asked["text"], heard_next["text"]) == ("Tell me a story.", "Stop.")
    rate = sink_recorder.rate
    story_audio = recording[sink_recorder.index_at(asked["at"]):sink_recorder.index_at(pressed["at"])]
    assert sum(end - start for start, end in active_regions(story_audio, rate)) > 0.2, "the story was not heard"
    after = recording[sink_recorder.index_at(pressed["at"] + 0.2):sink_recorder.index_at(heard_next["at"])]
    assert len(after) > 0.3 * rate and not active_regions(after, rate), "sound after the barge-in"

    again = smoke(tmp_path, "again")  # same cache, a new emulator: every prompt from disk
    assert [(p["text"], p["cached"]) for p in prompts(again)] == [(text, True) for text, _ in said]


@pytest.mark.timeout(120)
def test_pi_assistant_warm_cache_has_every_prompt_ready_before_the_first_press(tmp_path: Path) -> None:
    seen = smoke(tmp_path, "warm", "--warm-cache")
    module = load_pi_assistant()
    assert f"{len(module.PROMPTS)} prompts cached" in seen["stdout"]
    assert {p["text"] for p in prompts(seen)} == set(module.PROMPTS.values())
    assert all(p["cached"] for p in prompts(seen))


class Terminal:
    """pi_assistant with stdin and stdout on pipes: type lines, wait for text to be printed."""

    def __init__(self, tmp_path: Path) -> None:
        require_sink()
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(sample_command("pi_assistant", *assistant_args(tmp_path)),
                                     env=environment(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr)
        self._cond = threading.Condition()
        self._out = b""
        self._eof = False
        self._thread = threading.Thread(target=self._read, name="test-terminal", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            data = os.read(self.proc.stdout.fileno(), 4096)
            with self._cond:
                self._out += data
                self._eof = not data
                self._cond.notify_all()
            if not data:
                return

    @property
    def output(self) -> str:
        with self._cond:
            return self._out.decode(errors="replace")

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        with self._cond:
            self._cond.wait_for(lambda: text.encode() in self._out or self._eof, timeout)
        assert text in self.output, f"{text!r} never printed; got:\n{self.output}"

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def ask(self, question: str) -> None:
        """Press Enter to talk, then type ``question`` once the assistant said "Yes?"."""
        self.wait_for("q = quit.")
        self.type("")
        self.wait_for("assistant: Yes?")
        self.type(question)

    def finish(self) -> Tuple[int, str]:
        """Wait for the sample to exit: its exit code and stderr."""
        code = self.proc.wait(TIMEOUT)
        self._stderr.seek(0)
        return code, self._stderr.read().decode(errors="replace")

    def __enter__(self) -> "Terminal":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:  # a failed test: do not leave the sample running
            self.proc.kill()
            self.proc.wait()
        self._thread.join(5.0)
        for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
            if stream is not None:
                stream.close()


@pytest.mark.timeout(120)
def test_pi_assistant_on_the_keyboard_enter_talks_a_typed_line_is_answered_q_quits(tmp_path: Path) -> None:
    with Terminal(tmp_path) as terminal:
        terminal.ask("What time is it?")
        terminal.wait_for("assistant: It is time for a cup of tea. The clock on the wall knows the rest.")
        terminal.type("What is the weather like?")  # typed straight away: no "Yes?" needed
        terminal.wait_for("assistant: It looks sunny and mild today. A good day for a walk.")
        assert terminal.output.count("assistant: Yes?") == 1
        terminal.type("q")
        code, errors = terminal.finish()
    assert code == 0, errors[-3000:]
    assert "Traceback" not in errors
    assert terminal.output.rstrip().endswith("assistant: Goodbye!")


@pytest.mark.timeout(120)
def test_pi_assistant_ctrl_c_mid_answer_exits_130_cleanly(tmp_path: Path) -> None:
    with Terminal(tmp_path) as terminal:
        terminal.ask("Tell me a story.")
        terminal.wait_for("assistant: Once upon")
        terminal.proc.send_signal(signal.SIGINT)
        code, errors = terminal.finish()
    assert code == 130, errors[-3000:]
    assert "Traceback" not in errors
    assert "Goodbye" not in terminal.output  # Ctrl-C quits at once


@pytest.mark.timeout(120)
def test_pi_assistant_button_pin_without_gpiozero_falls_back_to_the_keyboard(tmp_path: Path) -> None:
    if importlib.util.find_spec("gpiozero") is not None:
        pytest.skip("gpiozero is installed: the button would be used")
    result = run_sample("pi_assistant", *assistant_args(tmp_path, "--button-pin", "17"))
    assert result.returncode == 0, result.stderr[-3000:]  # stdin is /dev/null: end of input quits
    assert "no gpiozero (pip install gpiozero): using the keyboard instead" in result.stderr
    assert "q = quit." in result.stdout and "assistant: Goodbye!" in result.stdout


@pytest.mark.parametrize("sample", ["pi_assistant", "llm_stream"])
def test_without_a_key_the_sample_says_so_in_one_line(sample: str, tmp_path: Path) -> None:
    args = ["--cache-dir", str(tmp_path)] if sample == "pi_assistant" else []  # not the user's ~/.cache
    result = subprocess.run(sample_command(sample, *args), env=environment(), capture_output=True, text=True,
                            timeout=TIMEOUT, stdin=subprocess.DEVNULL)  # the real service, but no key
    assert result.returncode == 1
    assert "error: no API key" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.timeout(120)
def test_llm_stream_captions_every_word_in_order_and_speaks_before_the_generator_is_done() -> None:
    text = "Hello there! Tokens arrive in pieces, and speech starts early. Isn't that neat?"
    result = run_sample("llm_stream", "--emulator", "--token-delay", "0.08", text)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    captions, timing = result.stdout.splitlines()
    assert captions.split() == text.split()
    match = re.fullmatch(r"first audio after ([\d.]+) s; the generator finished after ([\d.]+) s; "
                         r"([\d.]+) s of speech", timing)
    assert match, timing
    first_audio, generator_done, speech = map(float, match.groups())
    assert first_audio < generator_done and speech > 0


@pytest.mark.timeout(120)
def test_hello_speaks_and_says_how_long_it_took(sink_recorder: SinkRecorder) -> None:
    result = run_sample("hello", "--emulator")
    recording = sink_recorder.stop(tail=0.2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert active_regions(recording, 24000), "nothing was heard on the sound device"
    assert re.fullmatch(r"spoke \d+\.\d s; first audio after \d+ ms\n", result.stdout), result.stdout
