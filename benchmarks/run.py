"""Run the benchmark suite and print the table.

    .venv/bin/python -m benchmarks.run                 # full run, ~2.5 min
    .venv/bin/python -m benchmarks.run --quick         # short run, ~35 s
    .venv/bin/python -m benchmarks.run --json out.json --details
    .venv/bin/python -m benchmarks.run --only latency,imports

Groups (``--only``): ``latency`` (figures 1-2), ``interrupt`` (3), ``cpu`` (4),
``memory`` (5), ``imports`` (6). The table lists figures in the issue's order.

Audio: figures 3 and 4 play on PortAudio's default device. Unless ``PULSE_SERVER``
is already set, a private PulseAudio daemon with a null sink is started for the
run (``scripts/pulse.sh`` with its own ``SMALLEST_PULSE_DIR``) and stopped at the
end; without PulseAudio those figures show ``n/a`` with the reason. PortAudio's
probing chatter on file descriptor 2 (ALSA, JACK) is sent to /dev/null; Python's
own stderr (progress, tracebacks) is kept.

Exit status 0, or 1 with ``--strict`` when a target fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Dict, List, Optional

from . import common, report
from .common import Figure
from .subjects import SUBJECTS, Subject

#: Run order (cheap, process-isolated ones first); the table uses ORDER below.
GROUPS = ["imports", "latency", "interrupt", "cpu", "memory"]
ORDER = [
    "first_audio_overhead", "first_audio_overhead_idle", "first_audio_e2e", "first_audio_device",
    "after_interrupt_ratio", "after_interrupt_e2e", "after_interrupt_idle_ratio",
    "interrupt_return", "after_interrupt_bound", "after_interrupt_heard", "sink_writes_after_interrupt",
    "cpu_per_audio_second_24000", "cpu_bare_pyaudio_24000", "cpu_per_audio_second_44100",
    "decode_throughput_24000", "decode_throughput_44100",
    "rss_growth", "flood_max_buffered", "flood_rss",
    "import_ratio", "import_time",
]


def _runner(group: str) -> Callable[[List[Subject], bool], List[Figure]]:
    if group == "latency":
        from .latency import run
    elif group == "interrupt":
        from .interrupt import run
    elif group == "cpu":
        from .cpu import run
    elif group == "memory":
        from .memory import run
    elif group == "imports":
        from .imports import run
    else:
        raise ValueError(group)
    return run


def _quiet_native_stderr() -> None:
    """Point fd 2 at /dev/null (PortAudio's ALSA/JACK probing), keep Python's stderr."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = os.fdopen(saved, "w", buffering=1)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (~35 s) with fewer samples")
    parser.add_argument("--json", metavar="FILE", help="save machine, figures, samples' statistics and details")
    parser.add_argument("--only", metavar="GROUPS", help=f"comma-separated subset of {','.join(GROUPS)}")
    parser.add_argument("--details", action="store_true", help="print each figure's details under the table")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--no-audio", action="store_true", help="skip starting PulseAudio (device figures: n/a)")
    parser.add_argument("--verbose-native", action="store_true", help="keep PortAudio's stderr chatter")
    args = parser.parse_args(argv)
    groups = GROUPS if not args.only else [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    if not args.verbose_native:
        _quiet_native_stderr()
    mode = "quick" if args.quick else "full"
    started = time.monotonic()
    stop_audio: Callable[[], None] = lambda: None
    if not args.no_audio and {"interrupt", "cpu"} & set(groups):
        why, stop_audio = common.ensure_audio()
        if why:
            common.log(f"audio figures will be n/a: {why}")
    elif args.no_audio:
        os.environ.pop("PULSE_SERVER", None)
        os.environ["SMALLEST_BENCH_NO_AUDIO"] = "1"
    subjects: List[Subject] = [cls() for cls in SUBJECTS]
    figures: Dict[str, Figure] = {}
    try:
        for n, group in enumerate(g for g in GROUPS if g in groups):
            t = time.monotonic()
            common.log(f"[{n + 1}/{len(groups)}] {group} ...")
            for figure in _runner(group)(subjects, args.quick):
                figures[figure.key] = figure
            common.log(f"    done in {time.monotonic() - t:.1f} s")
    finally:
        stop_audio()
    elapsed = time.monotonic() - started
    ordered = [figures[k] for k in ORDER if k in figures] + [f for k, f in figures.items() if k not in ORDER]
    names = [s.name for s in subjects]
    machine = common.machine()
    print(report.machine_lines(machine, mode, elapsed))
    print()
    print(report.table(ordered, names))
    problems = report.failures(ordered, names[0])
    if problems:
        print()
        print("not passing:")
        print(problems)
    if args.details:
        print()
        print("details:")
        print(report.details(ordered))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.to_json(ordered, names, machine, mode, elapsed), f, indent=1)
        common.log(f"saved {args.json}")
    failed = any(f.verdict(names[0]) == "FAIL" for f in ordered)
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
