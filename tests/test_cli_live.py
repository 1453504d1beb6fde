"""``smallest-say`` playing for real (PortAudio into the PulseAudio null sink), with pipes
kept open, a terminal on stderr, and Ctrl-C: run as subprocesses, heard through the sink."""
from __future__ import annotations

import os
import pty
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Dict, Iterator, List, Optional

import pytest

from smallest_sync.emulator import Emulator

from .sink import SinkRecorder, active_regions
from .test_cli import KEY, REPO, run

RATE = 24000
LONG_TEXT = "This sentence is one of many in a long recital. " * 30  # about a minute of tone audio
WAIT = 30.0  # a hang detector for each step, not a speed claim


class Lines:
    """A subprocess's text stream, read line by line on a thread so every wait has a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), name="test-lines", daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next(self) -> Optional[str]:
        """The next line, None at the end."""
        return self._lines.get(timeout=WAIT)

    def rest(self) -> List[str]:
        self._thread.join(WAIT)
        lines: List[str] = []
        while True:
            line = self._lines.get_nowait()
            if line is None:
                return lines
            lines.append(line)


@pytest.fixture
def start_say() -> Iterator:
    """Start smallest-say with pipes; every process is reaped (killed if still alive) afterwards."""
    procs: List[subprocess.Popen] = []

    def start(args: List[str], env: Optional[Dict[str, str]] = None, **options: object) -> subprocess.Popen:
        environment = {k: v for k, v in os.environ.items() if k != "SMALLEST_API_KEY"}
        environment.update(env or {})
        options.setdefault("stdin", subprocess.DEVNULL)
        options.setdefault("stdout", subprocess.PIPE)
        options.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen([sys.executable, "-m", "smallest_sync", *args], env=environment,
                                text=True, **options)  # type: ignore[call-overload]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(WAIT)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def default_device() -> List[str]:
    """(index, name) of the default output device, from --list-devices."""
    listing = run(["--list-devices"])
    line = next(line for line in listing.stdout.splitlines() if line.startswith("*"))
    index, name = line[1:].split(None, 1)
    return [index, name.rsplit("  (", 1)[0]]


def test_emulator_plays_through_the_default_device(sink_recorder: SinkRecorder) -> None:
    result = run(["--emulator", "Hello speakers."])
    recording = sink_recorder.stop(tail=0.2)
    assert result.returncode == 0, result.stderr
    assert active_regions(recording, RATE), "nothing was heard"


@pytest.mark.parametrize("by", ["index", "name"])
def test_device_chosen_by_index_or_name_is_heard(sink_recorder: SinkRecorder, emulator: Emulator, by: str) -> None:
    index, name = default_device()
    device = index if by == "index" else name
    result = run(["--base-url", emulator.base_url, "--device", device, "Hello device."], env=KEY)
    recording = sink_recorder.stop(tail=0.2)
    assert result.returncode == 0, result.stderr
    assert active_regions(recording, RATE), f"nothing was heard on device {device!r}"


def test_piped_lines_are_heard_while_the_pipe_is_still_open(
        sink_recorder: SinkRecorder, emulator: Emulator, start_say) -> None:
    proc = start_say(["--base-url", emulator.base_url, "--captions"], env=KEY, stdin=subprocess.PIPE)
    captions = Lines(proc.stdout)
    proc.stdin.write("First line here.\n")
    proc.stdin.flush()
    assert captions.next() == "First line here.", "the first line's words are heard"
    assert proc.poll() is None, "still listening: stdin is open"
    assert sink_recorder.wait_until(time.monotonic() + 0.1)  # parec's own latency
    heard_so_far = sink_recorder.snapshot()
    assert active_regions(heard_so_far, RATE), "and the sink heard it before stdin was closed"
    proc.stdin.write("\n\nSecond line.\n")
    proc.stdin.close()
    assert captions.next() == "Second line."
    assert proc.wait(WAIT) == 0, proc.stderr.read()
    assert captions.rest() == []


def test_ctrl_c_while_speaking_silences_at_once_and_exits_130(
        sink_recorder: SinkRecorder, emulator: Emulator, start_say) -> None:
    proc = start_say(["--base-url", emulator.base_url, "--captions", LONG_TEXT], env=KEY)
    captions = Lines(proc.stdout)
    assert captions.next(), "speech is being heard"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(WAIT) == 130, "a minute of speech was cut short"
    ended = time.monotonic()
    stderr = proc.stderr.read()
    assert "Traceback" not in stderr and "smallest-say: error" not in stderr, "Ctrl-C is not an error"
    recording = sink_recorder.stop(tail=0.5)
    after_exit = recording[sink_recorder.index_at(ended) + RATE // 10:]
    assert len(after_exit) and not active_regions(after_exit, RATE), "nothing is heard once it has exited"


def test_ctrl_c_while_waiting_for_stdin_exits_130(emulator: Emulator, start_say) -> None:
    proc = start_say(["--base-url", emulator.base_url, "--captions", "-o", os.devnull + ".wav"], env=KEY,
                     stdin=subprocess.PIPE)
    captions = Lines(proc.stdout)
    proc.stdin.write("Hello.\n")
    proc.stdin.flush()
    assert captions.next() == "Hello."
    proc.send_signal(signal.SIGINT)
    assert proc.wait(WAIT) == 130
    assert "Traceback" not in proc.stderr.read()


def on_terminal(start_say, args: List[str], *, streams: List[str]) -> str:
    """Run smallest-say with ``streams`` ("stdout", "stderr") on a pseudo-terminal; what it showed."""
    leader, follower = pty.openpty()
    try:
        proc = start_say(args, env=KEY, **{name: follower for name in streams})
    finally:
        os.close(follower)
    shown = b""
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: every writer to the terminal is gone
            break
        if not data:
            break
        shown += data
    os.close(leader)
    assert proc.wait(WAIT) == 0
    return shown.decode()


def test_on_a_terminal_a_file_gets_a_live_progress_line(emulator: Emulator, tmp_path: Path, start_say) -> None:
    story = tmp_path / "story.txt"
    story.write_text("One sentence. Another one. And a third.", encoding="utf-8")
    out = str(tmp_path / "o.wav")
    shown = on_terminal(start_say, ["--base-url", emulator.base_url, "-o", out, "-f", str(story)], streams=["stderr"])
    assert "\r\x1b[Ksentence 1/3, 0:00 heard" in shown and "\r\x1b[Ksentence 3/3" in shown
    assert shown.endswith(f"\r\x1b[Kwrote {out}\r\n"), "the line is cleared at the end"


def test_captions_on_the_same_terminal_get_progress_only_when_asked_and_as_whole_lines(
        emulator: Emulator, tmp_path: Path, start_say) -> None:
    story = tmp_path / "story.txt"
    story.write_text("One sentence. Another one.", encoding="utf-8")
    args = ["--base-url", emulator.base_url, "-o", str(tmp_path / "o.wav"), "-f", str(story), "--captions"]
    shown = on_terminal(start_say, args, streams=["stdout", "stderr"])
    assert shown.splitlines()[:2] == ["One sentence.", "Another one."], "no progress line in the captions' way"
    shown = on_terminal(start_say, args + ["--progress"], streams=["stdout", "stderr"])
    lines = shown.splitlines()
    assert [line.split(",")[0] for line in lines[:4]] == \
        ["sentence 1/2", "One sentence.", "sentence 2/2", "Another one."]
    assert "\x1b[K" not in shown


def test_readme_say_command_speaks_offline(sink_recorder: SinkRecorder, tmp_path: Path) -> None:
    result = run(["Hello from the README."], command=[str(REPO / "scripts" / "say")], cwd=tmp_path)
    recording = sink_recorder.stop(tail=0.2)
    assert result.returncode == 0, result.stderr
    assert "emulator" in result.stderr
    assert active_regions(recording, RATE)
