"""Run the benchmark suite, ours and the peers side by side, and print the table.

    .venv/bin/python -m benchmarks.run                 # full run
    .venv/bin/python -m benchmarks.run --quick         # short run
    .venv/bin/python -m benchmarks.run --json out.json --details
    .venv/bin/python -m benchmarks.run --only latency,imports --peers pipecat

Groups (``--only``): ``latency`` (figures 1-2), ``interrupt`` (3), ``cpu`` (4),
``memory`` (5), ``imports`` (6), ``recovery`` (7, ours only). The table lists figures in the issue's order.

Peers (``--peers``, default all; ``--no-peers``): the official SDK
(``smallestai``) and pipecat (``pipecat``), see :mod:`benchmarks.peers`. They
live in ``benchmarks/.peers-venv``, which the first run builds (about 30 s, pins
in ``benchmarks/peers/requirements.txt``). Each group runs for ours, then for
each peer in a worker process of that venv, against the same emulator; the
peers' medians, p95s and the ratio ours/peer are further columns.

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
from .common import Figure, mark_missing
from .peers import PEERS, remote
from .peers import venv as peers_venv
from .subjects import SUBJECTS, Subject

#: Run order (cheap, process-isolated ones first); the table uses ORDER below.
GROUPS = ["imports", "latency", "interrupt", "cpu", "memory", "recovery"]
ORDER = [
    "first_audio_overhead", "first_audio_overhead_idle", "first_audio_e2e", "first_audio_device",
    "after_interrupt_ratio", "after_interrupt_e2e", "after_interrupt_idle_ratio",
    "interrupt_return", "after_interrupt_bound", "after_interrupt_heard", "sink_writes_after_interrupt",
    "cpu_per_audio_second_24000", "cpu_bare_pyaudio_24000", "cpu_per_audio_second_44100",
    "cpu_per_audio_second_24000_to_48000", "cpu_resampling_extra", "cpu_receive_decode_24000",
    "recovery_heard_after_server_back",
    "decode_throughput_24000", "decode_throughput_44100",
    "rss_growth", "flood_max_buffered", "flood_rss",
    "import_ratio", "import_time",
]


#: Groups the peers have nothing to measure in (each figure says why).
OURS_ONLY_GROUPS = {"recovery"}


def group_runner(group: str) -> Callable[[List[Subject], bool], List[Figure]]:
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
    elif group == "recovery":
        from .recovery import run
    else:
        raise ValueError(group)
    return run


def quiet_native_stderr() -> None:
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
    parser.add_argument("--peers", metavar="NAMES", default=",".join(PEERS),
                        help=f"comma-separated peers to measure next to ours (default: {','.join(PEERS)})")
    parser.add_argument("--no-peers", action="store_true", help="measure ours only")
    args = parser.parse_args(argv)
    peers = [] if args.no_peers else [p.strip() for p in args.peers.split(",") if p.strip()]
    if set(peers) - set(PEERS):
        parser.error(f"unknown peer(s): {', '.join(sorted(set(peers) - set(PEERS)))}; choose from {', '.join(PEERS)}")
    groups = GROUPS if not args.only else [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    if not args.verbose_native:
        quiet_native_stderr()
    mode = "quick" if args.quick else "full"
    started = time.monotonic()
    peer_python, no_peers = (None, "") if not peers else peers_venv.ensure()  # built on the first run
    if no_peers:
        common.log(f"peers' figures will be n/a: {no_peers}")
    stop_audio: Callable[[], None] = lambda: None
    if not args.no_audio and {"interrupt", "cpu", "recovery"} & set(groups):
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
            ours = group_runner(group)(subjects, args.quick)
            figures.update((figure.key, figure) for figure in ours)
            _run_peers(peers, group, ours, figures, peer_python, no_peers, args)
            common.log(f"    done in {time.monotonic() - t:.1f} s")
    finally:
        stop_audio()
    elapsed = time.monotonic() - started
    ordered = [figures[k] for k in ORDER if k in figures] + [f for k, f in figures.items() if k not in ORDER]
    names = [s.name for s in subjects] + peers
    machine = common.machine()
    if peers:
        machine["peers"] = _peer_versions(peers)
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


def _run_peers(peers: List[str], group: str, ours: List[Figure], figures: Dict[str, Figure],
               python: Optional[str], why_not: str, args: argparse.Namespace) -> None:
    """Measure each peer on ``group`` in a worker (one after another, or at once for
    :data:`remote.CONCURRENT` groups); a peer that fails shows why on every figure."""
    if python is None or group in OURS_ONLY_GROUPS:
        for peer in peers:
            if python is None:
                mark_missing(ours, peer, why_not)
        return
    jobs: List[remote.Job] = []
    try:
        for peer in peers:
            jobs.append(remote.Job(python, peer, group, args.quick, verbose_native=args.verbose_native))
            if group not in remote.CONCURRENT:
                _collect(jobs[-1], ours, figures)
        if group in remote.CONCURRENT:
            for job in jobs:
                _collect(job, ours, figures)
    except BaseException:  # Ctrl-C while a worker runs: leave none behind
        for job in jobs:
            job.kill()
        raise


def _collect(job: "remote.Job", ours: List[Figure], figures: Dict[str, Figure]) -> None:
    try:
        remote.merge(figures, job.figures(), job.peer)
    except remote.PeerFailed as exc:
        common.log(f"    {job.peer}: {exc}")
        mark_missing(ours, job.peer, exc)
    common.log(f"    {job.peer}: {job.group} worker done in {job.elapsed:.1f} s")


def _peer_versions(peers: List[str]) -> str:
    """The pinned versions of the peers, from the requirements file the venv was built from."""
    pins = {}
    with open(peers_venv.REQUIREMENTS) as f:
        for line in f:
            spec = line.split(";")[0].split("#")[0].strip()
            if "==" in spec:
                package, version = spec.split("==", 1)
                pins[package.split("[")[0]] = version
    packages = {"smallestai": "smallestai", "pipecat": "pipecat-ai"}
    return ", ".join(f"{packages[p]} {pins.get(packages[p], '?')}" for p in peers)


if __name__ == "__main__":
    sys.exit(main())
