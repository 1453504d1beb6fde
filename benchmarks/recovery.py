"""Figure 7: how soon speech is heard again once a restarted sound server is back.

A Speaker plays on PortAudio's default device through a PulseAudio of this
figure's own (``SMALLEST_PULSE_DIR=/tmp/smallest-sync-bench-recovery-UID``, so
the other figures' daemon is not disturbed). Each trial: a warm utterance is
heard; the daemon is stopped and started again (``scripts/pulse.sh``, whose
``start`` returns once the daemon answers); at that moment, ``back``, an
utterance is queued. The figure is from ``back`` to its first sample being
heard (``Utterance.heard_at``: when the first block holding it starts playing),
so the server's own start is not in it; it includes noticing the dead stream,
reopening PortAudio and the stream, and the request to the emulator. The
server's start is in the details.

Ours only: the peers do not reopen a lost device (a pipecat or SDK program has to
be restarted).
"""
from __future__ import annotations

import os
import subprocess
import time
from typing import Any, Dict, List

from .common import OURS, REPO, Figure, Stat, log
from .server import EmulatorProcess
from .subjects import Subject

OURS_ONLY = "does not reopen a lost device: measured for ours only"


def run(subjects: List[Subject], quick: bool) -> List[Figure]:
    figure = Figure("recovery_heard_after_server_back", "next utterance heard after the sound server is back",
                    "ms", 1000.0, "<=", 100.0)
    for subject in subjects:
        if subject.name != OURS:
            figure.results[subject.name] = Stat.missing(OURS_ONLY)
    try:
        samples, details = _trials(3 if quick else 10)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        figure.results[OURS] = Stat.missing(f"no private PulseAudio: {exc}")
        return [figure]
    figure.results[OURS] = Stat.of(samples)
    figure.details[OURS] = details
    return [figure]


def _trials(count: int) -> "tuple[List[float], Dict[str, Any]]":
    from smallest_sync import Speaker

    script = os.path.join(REPO, "scripts", "pulse.sh")
    env = dict(os.environ, SMALLEST_PULSE_DIR=f"/tmp/smallest-sync-bench-recovery-{os.getuid()}")

    def pulse(action: str) -> float:
        began = time.monotonic()
        subprocess.run([script, action], env=env, check=True, capture_output=True, timeout=60)
        return time.monotonic() - began

    saved = {key: os.environ.get(key) for key in ("PULSE_SERVER", "PULSE_COOKIE")}
    pulse("start")
    exports = subprocess.run([script, "env"], env=env, check=True, capture_output=True, text=True).stdout
    for line in exports.splitlines():  # libpulse reads these at each connect: the Speaker's too
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ[key] = value.strip("'\"")
    samples: List[float] = []
    starts: List[float] = []
    try:
        with EmulatorProcess() as emu:
            speaker = Speaker(api_key="sk_benchmark", base_url=emu.base_url, timeout=5.0)
            try:
                for _ in range(count):
                    speaker.speak("Before the sound server restarts.")
                    pulse("stop")
                    starts.append(pulse("start"))
                    back = time.monotonic()
                    utterance = speaker.say("Back again.")
                    utterance.wait(10)
                    if utterance.heard_at is None:
                        raise RuntimeError(f"not heard after the restart ({utterance.error})")
                    samples.append(utterance.heard_at - back)
            finally:
                speaker.close()
    finally:
        pulse("stop")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    log(f"    smallest_sync: {count} sound server restarts")
    return samples, {"sound server start (s), median": round(sorted(starts)[len(starts) // 2], 3)}
