"""Figures 1 and 2: first audio (client overhead, end to end) and after an interrupt.

Set-up: the instrumented emulator in its own process (:mod:`benchmarks.server`),
``first_chunk_delay=0``, ``realtime_factor=20`` (chunks after the first are paced,
so a long utterance is still streaming when it is interrupted), tone engine. The
client plays into a *sink* output: every block of PCM is handed to a function on
the player thread as soon as it is taken, with no device clock in the way. Each
write is timestamped (``time.monotonic()`` on entry); an utterance's first audio
is its first write at or after its track's ``first_taken_at``, so a block of an
interrupted utterance that was taken before the cut but written after it is never
mistaken for the next utterance's first audio.

**First audio, end to end** = ``t0`` (just before ``say(text)``) → first PCM sample
handed to the output (``write()`` entered), on a warm socket.

**First audio, client overhead** = end to end − the emulator's own time to first
chunk, where the emulator's time is ``first_chunk − received``: from the moment
its handler had the request (``emu.received[i].time``) to the moment the ``send``
of the first ``chunk`` frame returned (bytes in the kernel). So the overhead is
everything the client does on the way out (``say``, queue, sender thread wake,
JSON, websocket framing and masking, ``send``) and on the way back (reader wake,
``recv``, WebSocket unframing, ``json.loads``, base64, int16 decode, ``feed``,
player thread wake, ``take``, ``write``), plus two loopback transits and the
emulator's websockets parsing of the request before its handler runs (neither is
the client's; together they are tens of microseconds, so the figure is a slight
over-estimate). Details break it down with the Utterance's own timestamps:
``send path`` (t0 → ``sent_at``, after ``send`` returned), ``transit+server
parse`` (``sent_at`` → received; can be negative: the server may have it before
``send`` returns), ``server`` (received → first chunk sent), ``recv+parse``
(first chunk sent → ``first_chunk_at``, set by the reader once the frame is
parsed), ``decode+feed+play`` (``first_chunk_at`` → first write).

**After-interrupt first audio** (figure 2): in each trial, a long utterance is
said; 10 ms after its first audio (the server still streaming it), ``interrupt()``
is called and, as soon as it returns, ``say(short)``: its end-to-end first audio,
divided by warm end-to-end first audio measured in the same run, interleaved
pair by pair (median and p95 of the per-pair ratios). The interrupt aborts the socket
that was still streaming (by design), so this includes opening a new one.
A second, informational ratio waits 250 ms after the interrupt before speaking
(the usual case: a user barges in, then the app answers later) and compares it
with a request made after 250 ms of idleness without an interrupt (an idle
machine is slower: CPUs asleep, caches cold; the "after 250 ms idle" overhead row
shows by how much).

Warm trials run back to back (the previous utterance just ended), which is the
best case for CPU caches and scheduler wake-ups; the idle row is the other end.
A first send on a freshly opened socket returns ~1 ms late here (the kernel runs
the emulator's wake-up on the sender's CPU), which shows in ``send path`` and as a
negative ``transit+server parse`` after an interrupt; it is not on the path to
first audio beyond that.

**Peers** (same emulator, same texts; their wrappers are in
:mod:`benchmarks.peers`). The official SDK has no connection to keep warm:
each ``synthesize()`` opens a socket and sleeps in 0.1 s steps until it is
open, so its "warm" first audio is what every call of it costs (~100 ms);
it cannot interrupt, so it has warm and idle trials only. pipecat keeps one
socket; its first audio is when the pipeline's last processor gets the first
``TTSAudioRawFrame``, and its interrupt queues an ``InterruptionFrame`` (its
service then closes the socket and opens a new one before the next request).
Neither reports when it sent a request, so their stage breakdowns are empty;
the server's own time is subtracted the same way (requests are matched by text).
"""
from __future__ import annotations

import random
import threading
import time
from typing import Any, Dict, List, Optional

from .common import Figure, Stat, log, mark_missing
from .server import EmulatorProcess
from .subjects import Handle, Subject, Unsupported, wait_first_audio

LONG_TEXT = "This long sentence number {} is going to be cut off well before it ever gets to the end."


class WriteLog:
    """Timestamps of the sink's writes (player thread appends, benchmark reads)."""

    def __init__(self) -> None:
        self.times: List[float] = []
        self._lock = threading.Lock()

    def __call__(self, pcm: Any) -> None:
        now = time.monotonic()
        if len(pcm):
            with self._lock:
                self.times.append(now)

    def clear(self) -> None:
        with self._lock:
            self.times.clear()

    def first_at_or_after(self, t: float) -> Optional[float]:
        with self._lock:
            return next((w for w in self.times if w >= t), None)

    def count_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(1 for w in self.times if start <= w < end)


def _first_audio(log_: WriteLog, handle: Handle, t0: float) -> Optional[float]:
    taken = handle.first_audio_at
    return log_.first_at_or_after(taken if taken is not None else t0)


def run(subjects: List[Subject], quick: bool) -> List[Figure]:
    pairs = 25 if quick else 100
    idle_trials = 6 if quick else 25
    overhead = Figure("first_audio_overhead", "first audio, client overhead (warm)", "ms", 1e3, "<=", 2.0)
    overhead_idle = Figure("first_audio_overhead_idle", "first audio, client overhead (after 250 ms idle)", "ms", 1e3)
    e2e = Figure("first_audio_e2e", "first audio, end to end (warm, server 0 ms)", "ms", 1e3)
    after = Figure("after_interrupt_ratio", "first audio right after interrupt / warm", "x", 1.0, "<=", 1.2)
    after_abs = Figure("after_interrupt_e2e", "first audio right after interrupt, end to end", "ms", 1e3)
    delayed = Figure("after_interrupt_idle_ratio", "first audio 250 ms after interrupt / after 250 ms idle", "x")
    late = Figure("sink_writes_after_interrupt", "sink writes of cut audio after interrupt() returned", "writes")
    figures = [overhead, overhead_idle, e2e, after, after_abs, delayed, late]
    for subject in subjects:
        writes = WriteLog()
        with EmulatorProcess(realtime_factor=20.0, first_chunk_delay=0.0) as emu:
            try:
                subject.open(emu.base_url, output="sink", on_write=writes)
            except Unsupported as exc:
                mark_missing(figures, subject.name, exc)
                continue
            try:
                r = _measure(subject, emu, writes, pairs, idle_trials)
            finally:
                subject.close()
        name = subject.name
        overhead.results[name] = Stat.of(r["warm"]["overhead"])
        overhead_idle.results[name] = Stat.of(r["idle"]["overhead"])
        e2e.results[name] = Stat.of(r["warm"]["e2e"])
        if r["warm"]["stages"]:  # peers report no send time: no breakdown
            overhead.details[name] = {"stages (ms)": r["warm"]["stages"]}
            overhead_idle.details[name] = {"stages (ms)": r["idle"]["stages"]}
        if subject.no_interrupt is not None:
            mark_missing([after, after_abs, delayed, late], name, subject.no_interrupt)
            continue
        after.results[name] = Stat.ratio(r["pairs"])
        after_abs.results[name] = Stat.of(r["after"]["e2e"])
        delayed.results[name] = Stat.ratio(r["idle_pairs"])
        late.results[name] = Stat.of(r["late_writes"])
        if r["after"]["stages"]:
            after.details[name] = {"stages (ms)": r["after"]["stages"]}
        delayed.details[name] = {"e2e after interrupt (ms)": _ms(Stat.of(r["after_idle"]["e2e"])),
                                 "e2e after idle (ms)": _ms(Stat.of(r["idle"]["e2e"]))}
        if r["after_idle"]["stages"]:
            delayed.details[name]["stages after interrupt (ms)"] = r["after_idle"]["stages"]
    return figures


def _ms(stat: Stat) -> Dict[str, Optional[float]]:
    return {"median": None if stat.median is None else round(stat.median * 1e3, 3),
            "p95": None if stat.tail is None else round(stat.tail * 1e3, 3), "n": stat.n}


def _measure(subject: Subject, emu: EmulatorProcess, writes: WriteLog, pairs: int, idle_trials: int) -> Dict[str, Any]:
    rng = random.Random(1)
    rows: Dict[str, List[Dict[str, Any]]] = {"warm": [], "after": [], "idle": [], "after_idle": []}
    late_writes: List[float] = []

    def timed(kind: str, text: str) -> Optional[float]:
        writes.clear()
        t0 = time.monotonic()
        handle = subject.say(text)
        handle.wait(10)
        first = _first_audio(writes, handle, t0)
        rows[kind].append({"text": text, "t0": t0, "first": first, **handle.times()})
        return first

    def interrupt_mid_stream(serial: int) -> float:
        long_handle = subject.say(LONG_TEXT.format(serial))
        if wait_first_audio(long_handle) is None:
            raise RuntimeError("the long utterance never played")
        time.sleep(0.010)  # the server is still streaming it (realtime_factor 20: ~0.4 s)
        subject.interrupt()
        returned = time.monotonic()
        long_handle.wait(5)
        return returned

    for i in range(5):  # settle: allocator, caches, socket buffers
        subject.speak(f"Settle {i}.")
    emu.dump()
    started = time.monotonic()
    interrupts = subject.no_interrupt is None  # without, only the warm and idle trials
    for i in range(pairs):
        timed("warm", f"W{i}.")
        if interrupts:
            returned = interrupt_mid_stream(i)
            first = timed("after", f"A{i}.")
            late_writes.append(writes.count_between(returned, first if first is not None else returned))
        time.sleep(rng.uniform(0.0, 0.003))  # decorrelate from the emulator's timers
    for i in range(idle_trials):
        time.sleep(0.25)
        timed("idle", f"I{i}.")
        if interrupts:
            interrupt_mid_stream(pairs + i)
            time.sleep(0.25)
            timed("after_idle", f"D{i}.")
    silent = sum(1 for kind_rows in rows.values() for row in kind_rows if row["first"] is None)
    log(f"    {subject.name}: {pairs} warm{'/after-interrupt pairs' if interrupts else ' trials'}, "
        f"{idle_trials} idle {'pairs' if interrupts else 'trials'} in {time.monotonic() - started:.1f} s"
        + (f"; {silent} gave no audio (left out)" if silent else ""))
    server = emu.by_text()
    def e2e(row: Dict[str, Any]) -> Optional[float]:
        return None if row["first"] is None else float(row["first"] - row["t0"])

    result: Dict[str, Any] = {
        "late_writes": late_writes,
        "pairs": [(e2e(a), e2e(w)) for a, w in zip(rows["after"], rows["warm"])],
        "idle_pairs": [(e2e(a), e2e(w)) for a, w in zip(rows["after_idle"], rows["idle"])],
    }
    for kind, kind_rows in rows.items():
        latencies, overhead = [], []
        for row in kind_rows:
            if row["first"] is None:
                continue
            latencies.append(row["first"] - row["t0"])
            record = server.get(row["text"])
            if record is not None and record.get("first_chunk") is not None and record.get("received") is not None:
                overhead.append(row["first"] - row["t0"] - (record["first_chunk"] - record["received"]))
        result[kind] = {"e2e": latencies, "overhead": overhead, "stages": _breakdown(kind_rows, server)}
    return result


def _breakdown(rows: List[Dict[str, Any]], server: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Where first audio's time went, stage by stage (medians and p95s in ms)."""
    parts: Dict[str, List[float]] = {k: [] for k in (
        "send path", "transit+server parse", "server", "recv+parse", "decode+feed+play")}
    for row in rows:
        record = server.get(row["text"])
        if (record is None or record.get("first_chunk") is None or record.get("received") is None or row["first"] is None
                or row.get("sent") is None or row.get("first_chunk") is None):
            continue
        parts["send path"].append(row["sent"] - row["t0"])
        parts["transit+server parse"].append(record["received"] - row["sent"])
        parts["server"].append(record["first_chunk"] - record["received"])
        parts["recv+parse"].append(row["first_chunk"] - record["first_chunk"])
        parts["decode+feed+play"].append(row["first"] - row["first_chunk"])
    return {name: _ms(Stat.of(values)) for name, values in parts.items() if values}
