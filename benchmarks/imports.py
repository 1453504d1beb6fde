"""Figure 6: import time of ``smallest_sync`` against its unavoidable dependencies.

Each sample is a fresh interpreter (``python -c``, the venv's python, repo root as
working directory) that times, with ``time.perf_counter()`` around the import
statement only, either ``import smallest_sync`` or ``import numpy, websocket``
(what any client of this service in Python pays anyway). Interpreter start-up is
not in the figure. The two kinds alternate, so drift affects both alike; each
back-to-back pair gives one ratio, reported as median and p95.

Bytecode: every interpreter runs with ``PYTHONPYCACHEPREFIX`` pointing to a private
cache under /tmp and ``PYTHONDONTWRITEBYTECODE`` unset, after one warm-up import
of each side, so *both* sides load cached bytecode, as after ``pip install``
(which compiles). Without this, in an environment with
``PYTHONDONTWRITEBYTECODE=1`` (this one) and the package used from its source
tree, ``smallest_sync`` would be compiled from source on every import while
numpy's installed ``.pyc`` files are used: an unfair comparison. The cache lives
outside the repository, so nothing is written into ``smallest_sync/``. The
from-source time is in the details for reference.

The details list the modules ``smallest_sync`` adds on top of numpy and
websocket-client, with their own (``self``) import times from ``python -X
importtime`` (one extra run), largest first: where to look when the ratio fails.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Dict, List, Optional

from .common import REPO, Figure, Stat, log
from .subjects import Subject

_TIMER = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"
BASELINE = "numpy, websocket"
#: What each subject imports; peers add theirs (e.g. "smallestai", "pipecat.services.smallest").
MODULES = {"smallest_sync": "smallest_sync"}


def _env(cached: bool = True) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    if cached:
        env["PYTHONPYCACHEPREFIX"] = f"/tmp/smallest-sync-bench-pycache-{os.getuid()}"
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # installed packages keep their .pyc; a source tree has none
    return env


def _time(module: str, env: Optional[Dict[str, str]] = None) -> float:
    out = subprocess.run([sys.executable, "-c", _TIMER.format(module)], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True, env=env or _env())
    return float(out.stdout.strip().splitlines()[-1])


def _added_modules(module: str, top: int = 8) -> Dict[str, float]:
    """Self import time (ms) of modules imported by ``module`` but not by the baseline."""
    def importtime(what: str) -> Dict[str, float]:
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {what}"], cwd=REPO,
                             capture_output=True, text=True, timeout=60, env=_env()).stderr
        times: Dict[str, float] = {}
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, _, name = (part.strip() for part in line[len("import time:"):].split("|"))
            times[name] = int(self_us) / 1000
        return times

    base = importtime(BASELINE)
    added = {name: ms for name, ms in importtime(module).items() if name not in base}
    return dict(sorted(added.items(), key=lambda kv: -kv[1])[:top])


def run(subjects: List[Subject], quick: bool) -> List[Figure]:
    runs = 7 if quick else 21
    ratio = Figure("import_ratio", f"import time / import {BASELINE}", "x", 1.0, "<=", 1.2)
    absolute = Figure("import_time", "import time (fresh interpreter)", "ms", 1e3)
    baseline: List[float] = []
    samples: Dict[str, List[float]] = {s.name: [] for s in subjects if s.name in MODULES}
    _time(BASELINE)  # fill the bytecode cache and the OS page cache for both
    for name in samples:
        _time(MODULES[name])
    for _ in range(runs):
        baseline.append(_time(BASELINE))
        for name in samples:
            samples[name].append(_time(MODULES[name]))
    log(f"    {runs} fresh interpreters per module")
    for subject in subjects:
        if subject.name not in samples:
            ratio.results[subject.name] = absolute.results[subject.name] = Stat.missing("no module to import")
            continue
        ratio.results[subject.name] = Stat.ratio(list(zip(samples[subject.name], baseline)))
        absolute.results[subject.name] = Stat.of(samples[subject.name])
        details: Dict[str, Any] = {
            f"import {BASELINE} (ms)": {"median": round(Stat.of(baseline).median * 1e3, 2),  # type: ignore[operator]
                                        "p95": round(Stat.of(baseline).tail * 1e3, 2)},  # type: ignore[operator]
        }
        if not quick:
            source = [_time(MODULES[subject.name], _env(cached=False)) for _ in range(3)]
            details["import from source, no bytecode cache (ms, median of 3)"] = round(
                sorted(source)[1] * 1e3, 1)
        if not quick or (ratio.results[subject.name].median or 0) > 1.2:
            details["largest additions, self ms (-X importtime)"] = _added_modules(MODULES[subject.name])
        ratio.details[subject.name] = details
    return [ratio, absolute]
