"""Worker process: one figure group for one peer, on the peers' venv python.

    benchmarks/.peers-venv/bin/python -m benchmarks.peers.worker \\
        --subject pipecat --group latency --out FILE [--quick]

Runs the same group function ours goes through (:func:`benchmarks.run.group_runner`)
with the peer's :class:`~benchmarks.subjects.Subject` alone, and writes
``{"figures": [Figure as a dict, ...]}`` to ``FILE``, or ``{"error": why}`` when
the group could not run at all (the peer does not import, or raised something
other than :class:`~benchmarks.subjects.Unsupported`). Started and bounded by
:mod:`benchmarks.peers.remote`; the repository is on ``PYTHONPATH`` and the
emulator runs on the main venv's python (``SMALLEST_BENCH_EMULATOR_PYTHON``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import traceback
from typing import Any, Dict, List, Optional

from ..common import log
from ..run import group_runner, quiet_native_stderr
from ..subjects import by_name


def run_group(subject_name: str, group: str, quick: bool) -> Dict[str, Any]:
    try:
        subject = by_name(subject_name)
    except ImportError as exc:
        return {"error": f"{subject_name} does not import here: {exc}"}
    try:
        figures = group_runner(group)([subject], quick)
    except Exception as exc:  # one broken peer must not take the table down: reported as n/a
        traceback.print_exc()
        return {"error": f"{subject_name} failed in {group}: {type(exc).__name__}: {exc}"[:300]}
    return {"figures": [dataclasses.asdict(f) for f in figures]}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.worker")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--verbose-native", action="store_true")
    args = parser.parse_args(argv)
    if not args.verbose_native:
        quiet_native_stderr()
    result = run_group(args.subject, args.group, args.quick)
    if "error" in result:
        log(f"    {args.subject}: {result['error']}")
    with open(args.out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
