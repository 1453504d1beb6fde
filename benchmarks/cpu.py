"""Figure 4: CPU per second of audio played, and decode throughput.

**CPU per second of audio** (24 kHz and 44.1 kHz): the client plays on PortAudio's
default device (the PulseAudio null sink: a real PortAudio stream, libpulse
thread and all), against the emulator in its own process at its
defaults (4× real time, 20 ms to first chunk), so only the client's CPU is counted.
Utterances of ~4 s (``--quick``: ~2.6 s) are spoken one after another with ``speak()``; for each, the
process CPU time (``time.process_time()``: user + system, every thread of the
process, PortAudio's and libpulse's included) spent from the end of the previous
``speak()`` to the end of this one, divided by the seconds of audio it played
(``Utterance.duration``). The gap between utterances (first audio of the next) is
in the numerator, not the denominator, so the figure slightly over-states.
Reported as a percentage of one core. The details give the CPU per thread over
the whole phase (``/proc/self/task``, 10 ms ticks; ``native:threaded-ml`` is
libpulse's) and the idle cost of an open Speaker with nothing to say.

**24 kHz resampled to a 48 kHz device** (ours only): the same, with the default
device run at 48 kHz (``DeviceOutput(device_rate=48000)``), so every sample goes
through the streaming resampler (python-soxr) and twice the frames through
PortAudio and PulseAudio. The row under it is what that adds: each resampled
utterance's figure less the native 24 kHz median of the same run (target ≤ 0.1 %).

**The floor**: a bare PyAudio stream in a fresh process, same rate and block as
``DeviceOutput`` (``DEFAULT_BLOCK_MS``), one Python thread writing a constant
buffer with blocking ``write()``: what any Python client playing through PyAudio
pays before doing anything (a callback stream costs more: see ``audio.py``).
Shown for information next to the figure, measured in the same run.

**CPU per second of audio, received + decoded, no device** (24 kHz): the same
utterances and emulator, with the output discarding samples as fast as they
come (``output="discard"``), so the figure is the client's own cost of getting
audio: socket, parse, decode, queues, threads. It is the CPU figure the peers
can be compared on: the official SDK plays nothing. What a call costs is what
is counted: for the SDK every ``synthesize()`` opens a new socket and thread;
for pipecat the pipeline's tasks run throughout (its 0.1 s context-stop wait
after each utterance included).

**The floor** is PyAudio's, not a client's: it is measured once, in ours' column.

**Decode throughput**: ``parse_frame`` + ``PcmDecoder.decode`` on frames shaped
exactly as the service sends them (``{"status":"chunk","request_id",...,"data":
{"audio": base64}}``, 150 ms of a sine each, 9.6 kB of base64 at 24 kHz), in
batches of 200 frames with a fresh decoder per batch (one per request, as the
client does). Each client is fed the frames as its socket library hands them
over (``Subject.frame_type``): ours as bytes (websocket-client's ``recv_data()``,
which our reader uses), the peers as str (the SDK's ``on_message`` and pipecat's
``websockets`` decode text frames). Throughput = audio seconds decoded / wall
seconds, i.e. "× real time", per batch; the tail column is the 5th percentile
(the slow batches).
"""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from typing import Any, Dict, List

import numpy as np

from smallest_sync.playback.device import DEFAULT_BLOCK_MS

from .common import OURS, REPO, Figure, Stat, diff_cpu, log, sink_ready, thread_cpu
from .server import EmulatorProcess
from .subjects import Subject, Unsupported

SENTENCE = "Processor time per second of audio, sentence {}, rate {}."  # ~4.1 s
SHORT_SENTENCE = "Processor time, sentence {}, rate {}."  # ~2.6 s (--quick)
FLOOR_NOT_A_CLIENT = "PyAudio's own floor, not a client's: measured once, in ours' column"
RESAMPLING_IS_OURS = "no resampling to a device's rate: measured for ours only"


def _resampling_cost(native: List[float], resampled: List[float]) -> Figure:
    """What resampling 24 -> 48 kHz adds: the resampled runs' CPU less the native
    runs' median (both measured in this run, one after the other)."""
    figure = Figure("cpu_resampling_extra", "  resampling 24 -> 48 kHz adds (resampled - native 24 kHz)",
                    "% core", 100.0, "<=", 0.1)
    base = float(np.median(native)) if native else None
    figure.results[OURS] = (Stat.of([sample - base for sample in resampled]) if base is not None
                            else Stat.missing("no native 24 kHz figure"))
    return figure


def run(subjects: List[Subject], quick: bool) -> List[Figure]:
    figures: List[Figure] = []
    utterances = 2 if quick else 5
    why = sink_ready()
    native: List[float] = []
    for rate, target, output in ((24000, 1.0, "device"), (44100, None, "device"), (24000, None, "device48")):
        if output == "device48":
            figure = Figure("cpu_per_audio_second_24000_to_48000",
                            "CPU per second of audio, 24 kHz resampled to a 48 kHz device", "% core", 100.0)
        else:
            figure = Figure(f"cpu_per_audio_second_{rate}", f"CPU per second of audio, {rate / 1000:g} kHz device",
                            "% core", 100.0, "<=", target)
        figures.append(figure)
        for subject in subjects:
            if why is not None:
                figure.results[subject.name] = Stat.missing(f"no audio device: {why}")
                continue
            if output == "device48" and subject.name != OURS:
                figure.results[subject.name] = Stat.missing(RESAMPLING_IS_OURS)
                continue
            try:
                samples, details = _cpu_per_second(subject, rate, utterances, SHORT_SENTENCE if quick else SENTENCE,
                                                   idle=rate == 24000 and output == "device" and not quick,
                                                   output=output)
            except Unsupported as exc:
                figure.results[subject.name] = Stat.missing(str(exc))
                continue
            figure.results[subject.name] = Stat.of(samples)
            figure.details[subject.name] = details
            if subject.name == OURS and rate == 24000 and output == "device":
                native.extend(samples)
            elif subject.name == OURS and output == "device48":
                figures.append(_resampling_cost(native, samples))
    floor = Figure("cpu_bare_pyaudio_24000", f"  floor: bare PyAudio stream, {DEFAULT_BLOCK_MS} ms blocks, 24 kHz",
                   "% core", 100.0)
    for subject in subjects:
        if subject.name != OURS:
            floor.results[subject.name] = Stat.missing(FLOOR_NOT_A_CLIENT)
        elif why is None:
            floor.results[OURS] = Stat.of(_bare_stream(24000, 24000 * DEFAULT_BLOCK_MS // 1000, 2.5 if quick else 4.0,
                                                         1 if quick else 3))
    figures.insert(1, floor)
    received = Figure("cpu_receive_decode_24000", "CPU per second of audio, received + decoded, no device",
                      "% core", 100.0)
    for subject in subjects:
        try:
            samples, details = _cpu_per_second(subject, 24000, utterances, SHORT_SENTENCE if quick else SENTENCE,
                                               idle=False, output="discard")
        except Unsupported as exc:
            received.results[subject.name] = Stat.missing(str(exc))
            continue
        received.results[subject.name] = Stat.of(samples)
        received.details[subject.name] = details
    figures.append(received)
    figures.extend(_decode_figures(subjects, quick))
    return figures


_BARE = """
import sys, time, pyaudio
rate, frames, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
data = bytes(range(256)) * (2 * frames // 256 + 1)
data = data[:2 * frames]
pa = pyaudio.PyAudio()
stream = pa.open(format=pyaudio.paInt16, channels=1, rate=rate, output=True, frames_per_buffer=frames)
for _ in range(int(0.5 * rate / frames)):
    stream.write(data, frames)
c, w = time.process_time(), time.monotonic()
for _ in range(int(seconds * rate / frames)):
    stream.write(data, frames)
print((time.process_time() - c) / (time.monotonic() - w))
stream.close(); pa.terminate()
"""


def _bare_stream(rate: int, frames: int, seconds: float, runs: int) -> List[float]:
    """CPU fraction of a bare PyAudio stream fed by blocking writes, one fresh process per run."""
    out = []
    for _ in range(runs):
        result = subprocess.run([sys.executable, "-c", _BARE, str(rate), str(frames), str(seconds)], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        try:
            out.append(float(result.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            pass
    return out


def _cpu_per_second(subject: Subject, rate: int, utterances: int, sentence: str, idle: bool,
                    output: str = "device") -> "tuple[List[float], Dict[str, Any]]":
    with EmulatorProcess() as emu:  # defaults: 4x real time, 20 ms to first chunk
        subject.open(emu.base_url, output=output, sample_rate=rate)
        try:
            samples: List[float] = []
            audio = 0.0
            failed = 0
            threads_before = thread_cpu()
            wall0 = time.monotonic()
            cpu0 = last = time.process_time()
            for i in range(1, utterances + 1):
                handle = subject.speak(sentence.format(i, rate))
                now = time.process_time()
                if handle.error is not None or not handle.duration:
                    # (the SDK's connect race fails ~1.5 % of calls: no sample, but its CPU stays in the phase)
                    failed += 1
                else:
                    samples.append((now - last) / handle.duration)
                    audio += handle.duration
                last = now
            if not audio:
                raise RuntimeError(f"all {utterances} utterances failed")
            wall = time.monotonic() - wall0
            per_thread = diff_cpu(thread_cpu(), threads_before)
            details: Dict[str, Any] = {
                "audio played (s)": round(audio, 2), "wall (s)": round(wall, 2),
                "whole phase (% core)": round((last - cpu0) / audio * 100, 3),
                "CPU seconds per thread": dict(sorted(per_thread.items(), key=lambda kv: -kv[1])),
            }
            if failed:
                details["failed utterances (left out; their CPU counts in the whole phase)"] = failed
            if idle:
                time.sleep(1.5)  # let the last utterance's threads settle
                c0, w0 = time.process_time(), time.monotonic()
                time.sleep(3.0)
                details["idle Speaker (% core)"] = round(
                    (time.process_time() - c0) / (time.monotonic() - w0) * 100, 3)
        finally:
            subject.close()
    log(f"    {subject.name}: {audio:.1f} s of audio at {rate} Hz, output {output}")
    return samples, details


def _frames(rate: int, count: int) -> List[str]:
    n = int(rate * 0.150)
    t = np.arange(n * count) / rate
    pcm = (np.sin(2 * np.pi * 440.0 * t) * 9000).astype("<i2")
    frames = []
    for i in range(count):
        payload = base64.b64encode(pcm[i * n:(i + 1) * n].tobytes()).decode("ascii")
        frames.append(json.dumps({
            "status": "chunk", "request_id": "0b7f6a9e-1c1e-4f5e-9a55-3f0f0b9a8c11",
            "session_id": "sess_5d8f0c2a9b7e4c1d", "external_request_id": "ss1a2b3c4d-17",
            "external_session_id": None, "data": {"audio": payload},
        }, separators=(",", ":")))
    return frames


def _decode_figures(subjects: List[Subject], quick: bool) -> List[Figure]:
    batches = 15 if quick else 60
    figures = []
    for rate, target in ((24000, 1000.0), (44100, None)):
        figure = Figure(f"decode_throughput_{rate}", f"parse + decode, 150 ms chunks, {rate / 1000:g} kHz",
                        "x realtime", 1.0, ">=", target)
        frames = _frames(rate, 200)
        for subject in subjects:
            try:
                subject.frame_decoder()
            except Unsupported as exc:
                figure.results[subject.name] = Stat.missing(str(exc))
                continue
            # each as its socket library hands it over (ours: bytes, the peers: str)
            typed = [raw.encode() for raw in frames] if subject.frame_type is bytes else frames
            results = []
            for batch in range(3 + batches):  # 3 warm-up batches
                decode = subject.frame_decoder()
                start = time.perf_counter()
                for raw in typed:
                    decode(raw)
                elapsed = time.perf_counter() - start
                if batch >= 3:
                    results.append(len(frames) * 0.150 / elapsed)
            figure.results[subject.name] = Stat.of(results, higher_is_better=True)
            figure.details[subject.name] = {"per frame (us)": round(0.150 / float(np.median(results)) * 1e6, 1)}
        figures.append(figure)
    return figures
