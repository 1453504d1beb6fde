"""Figure 5: memory after many utterances, and the player's bound under a flood.

**RSS growth**: one Speaker, output discarded as fast as it comes (``NullOutput
(realtime=False)``: a sink keeping nothing; ``MemoryOutput`` would grow by
design), the emulator in its own process at full speed (``realtime_factor=0``,
no first-chunk delay). Short utterances (``"M17."``: ~0.3 s of audio each) are
spoken one after another; RSS (``/proc/self/status`` VmRSS, after
``gc.collect()``) after the 10th is subtracted from RSS after the 1000th. One run
is the sample (no p95). The full run carries on to 3000 (details) to show whether
growth levels off or keeps going. Details: RSS every 100 utterances, and Python's own view
(``sys.getallocatedblocks()``, gc-tracked objects) to tell interpreter objects
from allocator/arena noise.

**Player queue under a flood**: ~160 s of audio (13 requests of 20 long words)
sent as fast as the emulator can, into a real-time clock output
(``NullOutput()``), so audio arrives ~1000× faster than it plays. The player's
queued audio (``Player.buffered_seconds``) is sampled every 20 ms until it has
not grown for 1 s; the maximum is the figure. The player bounds it at 120 s
(a feed waits while the queue is over the bound, so one chunk, 0.15 s, may
overshoot). RSS growth during the flood is in the details (120 s of 24 kHz int16
is 5.5 MiB).

Peers: the same 1000 utterances (``output="discard"``; the full run's carry-on
to 3000 is ours only), in their own venv. The flood needs a player queue the
benchmark can read: the official SDK plays nothing and pipecat's output
transport queues audio internally, so both are n/a there.

Both run in a fresh child process per subject (``python -m benchmarks.memory
--subject NAME``, which prints JSON): RSS growth depends on what the heap went
through before (in a process that has already run the other benchmarks, freed
memory is reused and the same 1000 utterances show ~0 growth), so only a fresh
interpreter gives a repeatable number.
"""
from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from .common import OURS, REPO, Figure, Stat, log, rss_bytes
from .server import EmulatorProcess
from .subjects import Subject, Unsupported, by_name

_MIB = 1024 * 1024
_CHILD_TIMEOUT = 480.0  # ours' 3000 utterances take ~10 s; the SDK's 1000, ~210 s
_FLOOD_WORD = "floodwords"  # 10 letters: 0.57 s of tone + 0.06 s gap


def run(subjects: List[Subject], quick: bool) -> List[Figure]:
    count = 1000
    growth = Figure("rss_growth", f"RSS growth, 10 -> {count} utterances", "MB", 1 / 1e6, "<=", 2.0)
    flood = Figure("flood_max_buffered", "player queue under a flood (max buffered)", "s", 1.0, "<=", 120.15)
    flood_rss = Figure("flood_rss", "RSS growth during the flood", "MB", 1 / 1e6)
    for subject in subjects:
        # Full run, ours: carry on to 3000, to show whether growth levels off. Not the
        # peers: 0.1-0.2 s an utterance (a socket per call; a context-stop wait) adds minutes.
        extra = 0 if quick or subject.name != OURS else 2000
        try:
            proc = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--subject", subject.name,
                                   "--count", str(count), "--extra", str(extra)],
                                  cwd=REPO, capture_output=True, text=True, timeout=_CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:  # run() has killed it
            for figure in (growth, flood, flood_rss):
                figure.results[subject.name] = Stat.missing(f"child killed after {_CHILD_TIMEOUT:.0f} s")
            continue
        for line in proc.stderr.splitlines():
            if line.startswith("    "):
                log(line)
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            why = f"child failed: {proc.stderr.strip()[-300:]}"
            for figure in (growth, flood, flood_rss):
                figure.results[subject.name] = Stat.missing(why)
            continue
        if "growth" in result:
            growth.results[subject.name] = Stat.single(result["growth"])
            growth.details[subject.name] = result["growth_details"]
        else:
            growth.results[subject.name] = Stat.missing(result.get("growth_missing", "?"))
        if "flood" in result:
            flood.results[subject.name] = Stat.single(result["flood"])
            flood_rss.results[subject.name] = Stat.single(result["flood_rss"])
            flood.details[subject.name] = result["flood_details"]
        else:
            flood.results[subject.name] = flood_rss.results[subject.name] = Stat.missing(
                result.get("flood_missing", "?"))
    return [growth, flood, flood_rss]


def _measure() -> Dict[str, int]:
    gc.collect()
    return {"rss": rss_bytes(), "blocks": sys.getallocatedblocks(), "objects": len(gc.get_objects())}


def _growth(subject: Subject, count: int, extra: int) -> "tuple[float, Dict[str, Any]]":
    with EmulatorProcess(realtime_factor=0.0, first_chunk_delay=0.0) as emu:
        subject.open(emu.base_url, output="discard")
        try:
            started = time.monotonic()
            marks: Dict[int, Dict[str, int]] = {}
            errors: Dict[str, int] = {}
            for i in range(1, count + extra + 1):
                error = subject.speak(f"M{i}.").error
                if error is not None:  # a peer's failed call (ours raises instead)
                    errors[str(error)[:80]] = errors.get(str(error)[:80], 0) + 1
                if i == count:
                    elapsed = time.monotonic() - started
                if i == 10 or i % 100 == 0:
                    marks[i] = _measure()
                if i % 200 == 0:
                    emu.dump()  # the emulator keeps every request's PCM: let it go
        finally:
            subject.close()
    first, last = marks[10], marks[count]
    failed = f", {sum(errors.values())} failed (see details)" if errors else ""
    log(f"    {subject.name}: {count} utterances in {elapsed:.1f} s{failed}")
    details = {
        "RSS at 10 (MB)": round(first["rss"] / 1e6, 2),
        "RSS every 100 (MB)": [round(m["rss"] / 1e6, 2) for i, m in sorted(marks.items())
                               if i % 100 == 0 and (i <= count or i % 500 == 0)],
        "Python allocated blocks, 10 -> last": f"{first['blocks']} -> {last['blocks']}",
        "gc-tracked objects, 10 -> last": f"{first['objects']} -> {last['objects']}",
        "utterances per second": round(count / elapsed, 1),
    }
    if errors:
        details["utterances that failed, by error"] = errors
    if extra:
        end = marks[count + extra]
        details[f"RSS growth {count} -> {count + extra} (MB)"] = round((end["rss"] - last["rss"]) / 1e6, 2)
        details[f"gc-tracked objects at {count + extra}"] = end["objects"]
    return float(last["rss"] - first["rss"]), details


def _flood(subject: Subject) -> "tuple[float, float, Dict[str, Any]]":
    sentence = " ".join([_FLOOD_WORD] * 20) + "."
    text = " ".join([sentence] * 13)
    with EmulatorProcess(realtime_factor=0.0, first_chunk_delay=0.0) as emu:
        subject.open(emu.base_url, output="clock")
        try:
            subject.buffered_seconds()  # Unsupported before any work if it cannot tell
            before = _measure()["rss"]
            handle = subject.say(text)
            started = time.monotonic()
            peak, peak_at, peak_rss = 0.0, started, before
            while time.monotonic() - peak_at < 1.0 and time.monotonic() - started < 10.0:
                time.sleep(0.02)
                buffered = subject.buffered_seconds()
                if buffered > peak + 0.001:
                    peak, peak_at = buffered, time.monotonic()
                peak_rss = max(peak_rss, rss_bytes())
            subject.interrupt()
            handle.wait(5)
        finally:
            subject.close()
    log(f"    {subject.name}: flood peaked at {peak:.2f} s buffered after {peak_at - started:.2f} s")
    details = {"seconds to reach the peak": round(peak_at - started, 2),
               "RSS before (MB)": round(before / 1e6, 2), "RSS at peak (MB)": round(peak_rss / 1e6, 2)}
    return peak, float(peak_rss - before), details


def _child(name: str, count: int, extra: int) -> Dict[str, Any]:
    subject = by_name(name)
    out: Dict[str, Any] = {}
    try:
        out["growth"], out["growth_details"] = _growth(subject, count, extra)
    except Unsupported as exc:
        out["growth_missing"] = str(exc)
    subject = by_name(name)
    try:
        out["flood"], out["flood_rss"], out["flood_details"] = _flood(subject)
    except Unsupported as exc:
        out["flood_missing"] = str(exc)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--extra", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(_child(args.subject, args.count, args.extra)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
