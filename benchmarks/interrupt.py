"""Figure 3: how fast ``interrupt()`` returns, and how much audio is heard after it.

Set-up: the real audio path. The client plays on PortAudio's default device, which
is the private PulseAudio daemon's null sink (``scripts/pulse.sh``), and
:class:`tests.sink.SinkRecorder` records that sink's monitor at 24 kHz, where the
path is bit-exact. The emulator (own process) paces audio at twice real time
(``realtime_factor=2``; at 1 the device, which reads ahead, would underrun), so at
the moment of the interrupt the server is still streaming: ``interrupt()`` also aborts that socket (the worst case for its return
time). Each trial says one tone word ~2.9 s long (one continuous burst, so the cut
cannot hide in a pause between words), waits 0.3–0.8 s (random) after its first
sample was taken by the device, and interrupts.

* **interrupt() returns**: ``perf_counter`` around the call, on the calling thread.
* **audio after interrupt, bound** = samples the output took after ``interrupt()``
  returned (``track.taken`` then vs. 0.3 s later; the player promises 0) / rate +
  what the device buffer can still play: the output's reported latency
  (``stream.get_output_latency()``), or, for a client that drops its device buffer
  (ours closes the stream, which aborts it), the time from ``interrupt()``
  returning to that drop (``Player.flushed_at``) if shorter: a device plays in
  real time, so no more than that can come out of the buffer before it is
  dropped. A bound from the client's own clocks; the target is judged on what
  the sink heard.
* **audio after interrupt, heard (sink)**: from the recording. The trial's samples
  are located exactly (``tests.sink.find_segment`` on the emulator's deterministic
  tone, recomputed with ``smallest_sync.emulator.synthesize``); the recording
  matches the served PCM sample for sample up to the cut, so the number of samples
  actually *heard* is the first mismatch. The moment ``interrupt()`` returned is
  placed on the recording with the recorder's clock (``SinkRecorder.index_at``),
  calibrated as below, the same way for every client: heard after = (recording
  index of the cut − index of the return) / rate − offset. Where the client
  reports when its first sample is heard (ours: ``Utterance.heard_at``), the
  same figure placed with the client's own clock is in the details. A trial whose recording
  is not silent after the first mismatch (an underrun or glitch, not the cut) is
  left out and counted in the details.

Peers: the official SDK plays nothing (every figure here is n/a for it).
pipecat plays through its ``LocalAudioTransport`` (PyAudio blocking writes);
its ``interrupt()`` queues an ``InterruptionFrame``, and returns once the
pipeline's loop has taken it (see :mod:`benchmarks.peers.pipecat_tts`). It
reports no time its audio is heard (the details have no client-clock figure
for it).

**First audio heard on the sink** (warm, the emulator's first chunk at 0 ms):
from ``say()`` to the trial's first sample in the recording, on the recording's
clock for every client. That clock is calibrated first, in each client's run: a
bare PyAudio stream in this process writes 24 clicks, each into an idle
(drained) stream, and the median of (where the click is in the recording −
``index_at`` of the moment it was written) is subtracted from every time read
off the recording (here it is a few ms: the recorder's clock runs early). So 0
means "as soon as a bare PyAudio write would have been heard". Each client's own
estimate, where it has one, is in the details. Its handle counts samples when
PyAudio's blocking ``write()`` has returned, i.e. most of the 20 ms chunk
already played: "taken after" and "flushed" mean less for it than for ours.
"""
from __future__ import annotations

import random
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

from .common import REPO, Figure, Stat, log, mark_missing, sink_ready
from .server import EmulatorProcess
from .subjects import Subject, Unsupported, wait_first_audio

RATE = 24000
NO_DEVICE_TIME = "none: it reports no time its audio is heard"


def _text(i: int) -> str:
    return "Interruptible" + "z" * 48 + f"{i}."


def run(subjects: List[Subject], quick: bool) -> List[Figure]:
    trials = 6 if quick else 25
    returns = Figure("interrupt_return", "interrupt() returns", "ms", 1e3, "<=", 5.0)
    # Judged on what the sink heard: interrupt() drops the device buffer, so the bound
    # (which assumes it plays out) over-states; it stays for hosts where a drop is not possible.
    bound = Figure("after_interrupt_bound", "audio after interrupt, if the device buffer played: taken + latency",
                   "ms", 1e3)
    heard = Figure("after_interrupt_heard", "audio after interrupt, heard on the sink", "ms", 1e3, "<=", 30.0)
    device_first = Figure("first_audio_device", "first audio heard on the sink (warm, server 0 ms)", "ms", 1e3)
    figures = [returns, bound, heard, device_first]
    why = sink_ready()
    if why is not None:
        for figure in figures:
            for subject in subjects:
                figure.results[subject.name] = Stat.missing(f"no recordable sink: {why}")
        return figures
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from tests.sink import SinkRecorder

    for subject in subjects:
        with EmulatorProcess(realtime_factor=2.0, first_chunk_delay=0.0) as emu:
            recorder = SinkRecorder(RATE).start()
            try:
                offset = _recorder_offset(recorder)
                try:
                    subject.open(emu.base_url, output="device", sample_rate=RATE)
                except Unsupported as exc:
                    mark_missing(figures, subject.name, exc)
                    continue
                try:
                    rows = _trials(subject, trials)
                finally:
                    subject.close()
                recording = recorder.stop(tail=0.2)
            finally:
                recorder.close()
        _analyse(rows, recording, recorder, offset)
        ok = [r for r in rows if r.get("heard_after") is not None]
        name = subject.name
        returns.results[name] = Stat.of([r["returns"] for r in rows])
        bound.results[name] = Stat.of([r["bound"] for r in rows if r["bound"] is not None])
        heard.results[name] = Stat.of([r["heard_after"] for r in ok])
        device_first.results[name] = Stat.of([r["heard_rec"] - r["t0"] for r in rows if "heard_rec" in r])
        heard_at = Stat.of([r["heard"] - r["t0"] for r in rows if r["heard"] is not None])
        device_first.details[name] = {"by the client's own clock, median/p95 (ms)": [
            round(heard_at.median * 1e3, 1), round((heard_at.tail or 0) * 1e3, 1)]
            if heard_at.median is not None else NO_DEVICE_TIME}
        device_first.details[name]["recording clock offset, calibrated (ms)"] = round(offset * 1e3, 2)
        returns.details[name] = {"max (ms)": round(max(r["returns"] for r in rows) * 1e3, 3)}
        bound.details[name] = {
            "samples taken after interrupt() returned": sorted({r["taken_after"] for r in rows}),
            "reported output latency (ms)": sorted({round(r["latency"] * 1e3, 2) for r in rows if r["latency"]}),
            "device buffer dropped after interrupt() returned, per trial (ms)": [
                round(r["dropped_after"] * 1e3, 2) for r in rows if r["dropped_after"] is not None] or "never",
        }
        heard.details[name] = {
            "trials located in the recording": f"{len(ok)}/{len(rows)}",
            "trials with a glitch before the cut (left out)": sum(1 for r in rows if r.get("glitch")),
            "heard after, per trial (ms)": [round(r["heard_after"] * 1e3, 1) for r in ok],
            "same, the return placed by the client's own clock (ms)": [
                round(r["heard_after_own"] * 1e3, 1) for r in ok if "heard_after_own" in r] or NO_DEVICE_TIME,
            "taken but never heard (flushed), per trial (ms)": [round(r["flushed"] * 1e3, 1) for r in ok],
            "recording clock offset, calibrated (ms)": round(offset * 1e3, 2),
        }
    return figures


def _trials(subject: Subject, trials: int) -> List[Dict[str, Any]]:
    rng = random.Random(3)
    rows: List[Dict[str, Any]] = []
    latency: Optional[float]
    try:
        latency = subject.output_latency()
    except Unsupported:
        latency = None
    started = time.monotonic()
    for i in range(trials):
        text = _text(i)
        t0 = time.monotonic()
        handle = subject.say(text)
        first = wait_first_audio(handle)
        if first is None:
            raise RuntimeError("the device took no audio")
        time.sleep(rng.uniform(0.3, 0.8))
        a_monotonic = time.monotonic()
        a = time.perf_counter()
        subject.interrupt()
        b = time.perf_counter()
        returned = time.monotonic()
        try:
            taken_at_return: Optional[int] = handle.taken
        except Unsupported:
            taken_at_return = None
        handle.wait(2)
        time.sleep(0.3)  # the reconnect, the device flush and the recording catch up
        taken_after = None if taken_at_return is None else handle.taken - taken_at_return
        flushed = subject.device_flushed_at()
        dropped_after = None if flushed is None or flushed < a_monotonic else max(0.0, flushed - returned)
        left = latency if dropped_after is None or latency is None else min(latency, dropped_after)
        rows.append({
            "text": text, "t0": t0, "first": first, "heard": handle.heard_at, "returned": returned,
            "returns": b - a, "taken_at_return": taken_at_return, "taken_after": taken_after,
            "latency": latency, "dropped_after": dropped_after,
            "bound": None if taken_after is None or left is None else taken_after / RATE + left,
        })
    log(f"    {subject.name}: {trials} interrupt trials in {time.monotonic() - started:.1f} s")
    return rows


def _recorder_offset(recorder: Any, clicks: int = 24) -> float:
    """Seconds to subtract from times read off the recording: where a bare PyAudio
    write into a drained stream lands, against ``index_at`` of the moment it was written."""
    import pyaudio

    click = np.full(RATE // 50, 12000, dtype=np.int16).tobytes()  # 20 ms, never silent
    pa = pyaudio.PyAudio()
    stream = pa.open(format=pyaudio.paInt16, channels=1, rate=RATE, output=True, frames_per_buffer=RATE // 50)
    written = []
    rng = random.Random(7)
    try:
        for _ in range(clicks):
            # Drained: nothing buffered ahead of the click. A random phase against the
            # sound server's own render period, which places each click a little
            # differently; the median over many is what a trial sees on average.
            time.sleep(rng.uniform(0.12, 0.16))
            written.append(time.monotonic())
            stream.write(click, RATE // 50)
        time.sleep(0.25)
    finally:
        stream.close()
        pa.terminate()
    recorder.wait_until(time.monotonic())
    recording = recorder.snapshot()
    offsets = []
    for at in written:
        lo = max(0, recorder.index_at(at) - RATE // 20)
        sound = np.flatnonzero(recording[lo:lo + RATE // 5])
        if len(sound):
            offsets.append((lo + int(sound[0]) - recorder.index_at(at)) / RATE)
    return float(np.median(offsets)) if offsets else 0.0


def _analyse(rows: List[Dict[str, Any]], recording: "np.ndarray[Any, Any]", recorder: Any, offset: float) -> None:
    """Locate each trial in the recording; fill ``heard_after`` (None if not found).
    Times read off the recording are corrected by the calibrated ``offset``."""
    from smallest_sync.emulator import synthesize
    from tests.sink import find_segment

    for row in rows:
        row["heard_after"] = None
        pcm, _ = synthesize(row["text"], sample_rate=RATE)
        nonzero = int(np.flatnonzero(pcm)[0])
        probe = pcm[nonzero:nonzero + RATE // 10]
        guess = recorder.index_at(row["first"])
        lo = max(0, guess - RATE // 2)
        hi = min(len(recording), guess + RATE)
        found = find_segment(recording[lo:hi], probe)
        if found is None:
            continue
        s0 = lo + found - nonzero  # recording index of the track's sample 0
        row["heard_rec"] = row["first"] + (s0 - recorder.index_at(row["first"])) / RATE - offset
        span = recording[s0:s0 + len(pcm)]
        mismatch = np.flatnonzero(span != pcm[:len(span)])
        played = int(mismatch[0]) if len(mismatch) else len(span)
        if np.any(span[played:played + RATE // 5]):  # not silent after: a glitch, not the cut
            row["glitch"] = True
            continue
        row["heard_after"] = (s0 + played - recorder.index_at(row["returned"])) / RATE - offset
        if row["heard"] is not None:  # the client's own clock places its first sample
            position = (row["returned"] - row["heard"]) * RATE  # sample heard when interrupt() returned
            row["heard_after_own"] = (played - position) / RATE
        taken = row["taken_at_return"]
        row["flushed"] = (taken - played) / RATE if taken is not None else float("nan")
