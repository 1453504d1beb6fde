"""Whole programs: Ctrl-C during speak(), and a script that never calls close()."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import pytest

from smallest_sync.playback.player import AUDIO_JOIN_TIMEOUT

from .sink import SinkRecorder, active_regions

PROGRAM_HEAD = """
import sys, threading
sys.path.insert(0, {repo!r})
from smallest_sync import Speaker
from smallest_sync.emulator import Emulator, EmulatorConfig
emulator = Emulator(EmulatorConfig(realtime_factor=0)).start()
"""
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(body: str) -> subprocess.Popen:
    code = PROGRAM_HEAD.format(repo=REPO) + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)


def test_ctrl_c_during_speak_silences_at_once_and_leaves_the_speaker_usable(sink_recorder: SinkRecorder) -> None:
    program = start("""
        speaker = Speaker("sk_test", base_url=emulator.base_url,
                          on_start=lambda event: print("speaking", flush=True))
        try:
            speaker.speak(" ".join(["endless"] * 60))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        speaker.speak("Still here.")
        print("usable", flush=True)
        speaker.close()
        emulator.stop()
    """)
    try:
        assert program.stdout is not None
        assert program.stdout.readline().strip() == "speaking"
        assert sink_recorder.wait_until(time.monotonic() + 0.3)
        sent = time.monotonic()
        program.send_signal(signal.SIGINT)
        assert program.stdout.readline().strip() == "interrupted"
        assert time.monotonic() - sent < 2
        out, err = program.communicate(timeout=30)
    finally:
        program.kill()
    assert program.returncode == 0, err
    assert out.split() == ["speaking", "usable"]
    recording = sink_recorder.stop(tail=0.2)
    regions = active_regions(recording, 24000)
    stop_at = (sink_recorder.index_at(sent) - sink_recorder.index_at(time.monotonic())) / 24000 + len(recording) / 24000
    # The long utterance's sound ends within a device buffer of Ctrl-C; then only "Still here." sounds.
    before = [r for r in regions if r[0] < stop_at]
    assert before and before[-1][1] < stop_at + 0.15
    assert sum(end - begin for begin, end in regions if begin >= stop_at) < 2.0


def test_a_script_that_forgets_close_still_exits() -> None:
    program = start("""
        speaker = Speaker("sk_test", base_url=emulator.base_url, output="null")
        speaker.speak("Goodbye without closing.")
        speaker.say(" ".join(["never"] * 50))   # still playing when the script ends
        print("done", flush=True)
    """)
    try:
        out, err = program.communicate(timeout=30)
    finally:
        program.kill()
    assert program.returncode == 0, err
    assert out.strip() == "done" and "Traceback" not in err


@contextlib.contextmanager
def private_pulse() -> Iterator[Dict[str, str]]:
    """A PulseAudio of the test's own (so stopping it harms no other test): the
    environment that reaches it, with SMALLEST_PULSE_PID set to the daemon's pid."""
    pulse = os.path.join(REPO, "scripts", "pulse.sh")
    folder = tempfile.mkdtemp(prefix="ssp-")  # short: the socket path must fit 108 bytes
    env = {**os.environ, "SMALLEST_PULSE_DIR": folder}
    try:
        subprocess.run([pulse, "start"], env=env, check=True, capture_output=True, timeout=60)
        exports = subprocess.run([pulse, "env"], env=env, check=True, capture_output=True, text=True).stdout
        for line in exports.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = value.strip("'\"")
        with open(os.path.join(folder, "runtime", "pid")) as pid:
            env["SMALLEST_PULSE_PID"] = pid.read().strip()
        yield env
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError, KeyError):
            os.kill(int(env["SMALLEST_PULSE_PID"]), signal.SIGCONT)
        subprocess.run([pulse, "stop"], env=env, capture_output=True, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def speak_then(code: str, env: Dict[str, str], meanwhile: Callable[[], None],
               args: Sequence[str] = ()) -> Tuple[subprocess.Popen, str, str]:
    """Run ``code``; once it prints "speaking", do ``meanwhile`` and tell it "go" on
    stdin; return the ended program and what it printed."""
    program = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        assert program.stdout is not None and program.stdin is not None
        assert program.stdout.readline().strip() == "speaking"
        meanwhile()
        program.stdin.write("go\n")
        program.stdin.flush()
        out, err = program.communicate(timeout=30)
    finally:
        program.kill()
    return program, out, err


@pytest.mark.parametrize("when", ["mid-speech", "while idle", "fire and forget"])
def test_losing_the_sound_server_is_an_audio_device_error_not_a_hang(when: str) -> None:
    # (test_recovery.py: the same Speaker plays again once the server is back.)
    pulse = os.path.join(REPO, "scripts", "pulse.sh")
    with private_pulse() as env:
        code = PROGRAM_HEAD.format(repo=REPO) + textwrap.dedent("""
            from smallest_sync import AudioDeviceError
            ended, started = threading.Event(), threading.Event()

            def on_start(event):
                # Once: the test waits for this line. A later start (the write to a dead
                # server's buffer can still succeed) would race the main thread's prints.
                if not started.is_set():
                    started.set()
                    print("speaking", flush=True)

            speaker = Speaker("sk_test", base_url=emulator.base_url, timeout=1.0,
                              on_start=on_start, on_end=lambda event: ended.set())
            if sys.argv[1] == "while idle":
                speaker.speak("Warm up.")
                ended.clear()
                sys.stdin.readline()  # the test stops the sound server meanwhile
            if sys.argv[1] == "fire and forget":  # nobody waits on it: it must end anyway
                handle = speaker.say(" ".join(["unplugged"] * 40))
                if ended.wait(20) and isinstance(handle.error, AudioDeviceError):
                    print("device error:", handle.error, flush=True)
            else:
                try:
                    speaker.speak(" ".join(["unplugged"] * 40))
                except AudioDeviceError as exc:
                    print("device error:", exc, flush=True)
            handle = speaker.say("Anyone?")  # taken: it waits for the device, up to the timeout
            try:
                handle.wait(10)
            except AudioDeviceError:
                print("waited, then failed", flush=True)
            speaker.close()
            emulator.stop()
        """)
        lost: List[float] = []

        def stop_the_server() -> None:
            if when == "while idle":
                time.sleep(1.5)  # choreography: the warm-up has played out, the stream has run dry
            subprocess.run([pulse, "stop"], env=env, check=True, capture_output=True, timeout=30)
            lost.append(time.monotonic())

        program, out, err = speak_then(code, env, stop_the_server, [when])
        assert program.returncode == 0, err
        assert "device error:" in out and out.rstrip().endswith("waited, then failed"), out + err
        assert time.monotonic() - lost[0] < 10


def test_close_while_the_sound_server_hangs_returns_within_its_bound() -> None:
    with private_pulse() as env:
        code = PROGRAM_HEAD.format(repo=REPO) + textwrap.dedent("""
            import time
            started = threading.Event()
            speaker = Speaker("sk_test", base_url=emulator.base_url, on_start=lambda event: started.set())
            speaker.say(" ".join(["hanging"] * 40))
            started.wait(10)
            print("speaking", flush=True)
            sys.stdin.readline()  # the test stops (SIGSTOP) the sound server meanwhile
            began = time.monotonic()
            speaker.close()
            print(f"closed in {time.monotonic() - began:.2f} s", flush=True)
        """)
        def hang_the_server() -> None:
            os.kill(int(env["SMALLEST_PULSE_PID"]), signal.SIGSTOP)
            threading.Event().wait(0.5)  # choreography: the device write is stuck by now

        program, out, err = speak_then(code, env, hang_the_server)
        assert program.returncode == 0, err
        closed_in = float(out.split()[-2])
        assert closed_in < AUDIO_JOIN_TIMEOUT + 1.0, out  # the bound, and the other threads' joins
