"""Main-process side of the peers: run a group in a worker, merge its figures into ours.

A worker (:mod:`benchmarks.peers.worker`) runs in a session of its own, so on a
timeout the whole process group (the worker, its emulator, a memory child) is
killed with one ``killpg``, and the peer's figures of that group show why
instead of the run hanging. Its stdout and stderr go to our stderr (progress
lines, peer warnings); the figures come back in a JSON file.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

from ..common import REPO, Figure, Stat
from ..server import EMULATOR_PYTHON_ENV

#: Seconds a worker may take per group before it is killed (full runs; the
#: slowest is memory: 1000 utterances, ~0.2 s each for the SDK, ~0.12 s for pipecat).
TIMEOUTS = {"imports": 300.0, "latency": 300.0, "interrupt": 300.0, "cpu": 300.0, "memory": 600.0}


#: Groups whose workers run for all peers at once: RSS is per process, and these
#: workers mostly wait (the SDK in its 0.1 s connect polls, pipecat in its 0.1 s
#: context-stop timeout), so running them together saves minutes and moves no figure.
CONCURRENT = {"memory"}


class PeerFailed(Exception):
    """The worker did not produce figures (timed out, crashed, or the peer failed)."""


class Job:
    """One worker: ``group`` for ``peer`` on ``python``, started at once; :meth:`figures` waits."""

    def __init__(self, python: str, peer: str, group: str, quick: bool, *, verbose_native: bool = False) -> None:
        self.peer, self.group = peer, group
        self.timeout = TIMEOUTS.get(group, 300.0)
        self._started = time.monotonic()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
        env[EMULATOR_PYTHON_ENV] = sys.executable  # the same emulator, on our venv, for every subject
        self._tmp = tempfile.TemporaryDirectory(prefix="smallest-bench-peer-")
        self._out = os.path.join(self._tmp.name, "figures.json")
        command = [python, "-m", "benchmarks.peers.worker", "--subject", peer, "--group", group, "--out", self._out]
        command += ["--quick"] * quick + ["--verbose-native"] * verbose_native
        self._proc = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr,
                                      stderr=sys.stderr, start_new_session=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def figures(self) -> List[Figure]:
        """Wait (up to the group's timeout since the start) for the worker's figures."""
        try:
            remaining = max(0.0, self.timeout - (time.monotonic() - self._started))
            status = self._proc.wait(remaining)
        except subprocess.TimeoutExpired:
            self.kill()
            raise PeerFailed(f"worker killed after {self.timeout:.0f} s without finishing {self.group}") from None
        except BaseException:  # Ctrl-C: leave no worker behind
            self.kill()
            raise
        try:
            with open(self._out) as f:
                result: Dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            raise PeerFailed(f"worker exited with status {status} and no figures") from None
        finally:
            self._tmp.cleanup()
        if "error" in result:
            raise PeerFailed(str(result["error"]))
        return [_figure(d) for d in result["figures"]]

    def kill(self) -> None:
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)  # the worker leads its own process group
        except ProcessLookupError:
            pass
        self._proc.wait(10)
        self._tmp.cleanup()


def _figure(data: Dict[str, Any]) -> Figure:
    results = {name: Stat(**stat) for name, stat in data.pop("results").items()}
    return Figure(**data, results=results)


def merge(figures: Dict[str, Figure], theirs: List[Figure], peer: str) -> None:
    """Put ``peer``'s results (and details) from a worker into our figures, by key."""
    for figure in theirs:
        if figure.key not in figures:  # a figure only a worker produced: its row, empty
            figures[figure.key] = Figure(figure.key, figure.name, figure.unit, figure.scale, figure.op,
                                         figure.target)
        ours = figures[figure.key]
        if peer in figure.results:
            ours.results[peer] = figure.results[peer]
        if peer in figure.details:
            ours.details[peer] = figure.details[peer]
