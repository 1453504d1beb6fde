"""Shared pieces: figures and their targets, statistics, machine facts, small probes.

A :class:`Figure` is one row of the table. It holds one :class:`Stat` per *subject*
(the client measured: ``smallest_sync`` now, the official SDK and pipecat later),
so peers become further columns without touching the figures already there. The
target is judged on the first subject (ours); peers are shown for comparison.

Statistics: ``median`` and ``p95`` (linear interpolation, numpy's default). For a
figure where *higher* is better (throughput), the tail column is the 5th percentile
instead, so it is always the bad tail ("95 % of runs were at least this good"),
and the JSON says which (``tail``). Ratio figures (after-interrupt first audio,
import time) come from pairs measured back to back in the same run (A, then B,
then the next pair): each pair gives one ratio A/B, and the columns are the
median and p95 of those ratios.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import subprocess
import sys
import threading
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = "smallest_sync"


@dataclasses.dataclass
class Stat:
    """What one subject measured for one figure."""

    median: Optional[float]
    tail: Optional[float]  # p95 (lower-is-better) or p5 (higher-is-better)
    n: int
    note: str = ""  # e.g. why it is missing

    @classmethod
    def of(cls, samples: Sequence[float], *, higher_is_better: bool = False) -> "Stat":
        values = [float(v) for v in samples if v is not None]
        if not values:
            return cls(None, None, 0, "no samples")
        return cls(float(np.median(values)),
                   float(np.percentile(values, 5 if higher_is_better else 95)), len(values))

    @classmethod
    def ratio(cls, pairs: Sequence["tuple[Optional[float], Optional[float]]"]) -> "Stat":
        """From (A, B) pairs measured side by side: statistics of A/B."""
        return cls.of([a / b for a, b in pairs if a is not None and b])

    @classmethod
    def single(cls, value: float) -> "Stat":
        """One measurement (a whole run is the sample, e.g. memory growth)."""
        return cls(float(value), None, 1)

    @classmethod
    def missing(cls, why: str) -> "Stat":
        return cls(None, None, 0, why)


@dataclasses.dataclass
class Figure:
    """One row: what is measured, in which unit, against which target.

    ``op`` is ``"<="`` or ``">="``; ``target`` is in ``unit`` (None: no target,
    shown for information). ``scale`` converts stored values (SI: seconds, bytes,
    fractions) into the displayed unit.
    """

    key: str
    name: str
    unit: str
    scale: float = 1.0
    op: str = "<="
    target: Optional[float] = None
    results: Dict[str, Stat] = dataclasses.field(default_factory=dict)
    details: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        return self.op == ">="

    def verdict(self, subject: str = OURS) -> str:
        stat = self.results.get(subject)
        if self.target is None:
            return "info"
        if stat is None or stat.median is None:
            return "n/a"
        value = stat.median * self.scale
        ok = value <= self.target if self.op == "<=" else value >= self.target
        return "pass" if ok else "FAIL"

    def shortfall(self, subject: str = OURS) -> str:
        """How far from the target, for the summary of failures."""
        stat = self.results.get(subject)
        if stat is None or stat.median is None or self.target is None:
            return ""
        value = stat.median * self.scale
        return f"{value / self.target:.2f}x the target" if self.target else ""


# ----- machine ---------------------------------------------------------------------------
def mark_missing(figures: List["Figure"], subject: str, why: object) -> None:
    """``subject`` cannot be measured on any of ``figures`` (shown as n/a, with why)."""
    for figure in figures:
        figure.results[subject] = Stat.missing(str(why))


def machine() -> Dict[str, Any]:
    """CPU model, cores, Python, OS, date, and the commit measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "smallest_sync"],
                               cwd=REPO, capture_output=True, text=True, timeout=5).stdout.strip()
        if dirty:
            commit += " + uncommitted changes in smallest_sync/"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    try:
        from smallest_sync import __version__ as version
    except ImportError:
        version = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "smallest_sync": f"{version} ({commit})",
        # Others' work on a 2-core machine disturbs every figure: say how busy it was.
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?",
    }


# ----- probes ------------------------------------------------------------------------------
def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; ru_maxrss elsewhere is a peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def thread_cpu() -> Dict[str, float]:
    """CPU seconds (user+system) per thread of this process, by Python thread name
    where there is one (PortAudio/PulseAudio threads show as ``native:<comm>``).
    /proc ticks: 10 ms resolution, so use it over seconds, not milliseconds."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    tick = os.sysconf("SC_CLK_TCK")
    out: Dict[str, float] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        name = names.get(int(tid), f"native:{comm}")
        name = name.rstrip("0123456789-") if name.startswith("smallest-reader") else name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def diff_cpu(after: Dict[str, float], before: Dict[str, float]) -> Dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 3) for k, v in after.items() if v - before.get(k, 0.0) > 0}


def sink_ready() -> Optional[str]:
    """None if PortAudio's default device plays into the recordable null sink,
    else why not (with the command that fixes it)."""
    if os.environ.get("SMALLEST_BENCH_NO_AUDIO"):
        return "--no-audio"
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    try:
        from tests.sink import sink_available
    except ImportError as exc:  # pytest missing, or tests/ moved
        return f"tests/sink.py unavailable: {exc}"
    ok, reason = sink_available()
    return None if ok else reason


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_audio() -> "tuple[Optional[str], Any]":
    """Make PortAudio's default device the recordable null sink, if it is not yet.

    With ``PULSE_SERVER`` already set (``eval "$(scripts/pulse.sh env)"``) that
    daemon is used as is. Otherwise a private daemon is started for the benchmarks
    (``SMALLEST_PULSE_DIR=/tmp/smallest-sync-bench-pulse-UID``: not the one
    ``scripts/test`` uses, so a test run at the same time cannot hear our audio nor
    we its), and the returned function stops it. Returns (why not, stop)."""
    if os.environ.get("PULSE_SERVER"):
        return sink_ready(), lambda: None
    script = os.path.join(REPO, "scripts", "pulse.sh")
    env = dict(os.environ, SMALLEST_PULSE_DIR=f"/tmp/smallest-sync-bench-pulse-{os.getuid()}")
    try:
        subprocess.run([script, "start"], env=env, check=True, capture_output=True, text=True, timeout=30)
        out = subprocess.run([script, "env"], env=env, check=True, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        return f"cannot start PulseAudio ({str(detail).strip()[:200]})", lambda: None
    import shlex

    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            os.environ[key] = value

    def stop() -> None:
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=30)

    return sink_ready(), stop
