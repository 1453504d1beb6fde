"""Figure 6: import time of each client against its unavoidable dependencies.

Each sample is a fresh interpreter (``python -c``, the subject's venv's python,
repo root as working directory) that times, with ``time.perf_counter()`` around
the import statement only, either the statement a user writes to get the client
or its baseline: the client's own unavoidable dependencies, i.e. the WebSocket
library it is built on, plus numpy where it uses numpy for samples.

* ours: ``import smallest_sync`` / ``import numpy, websocket``
* official SDK: ``from smallestai.waves import WavesStreamingTTS, TTSConfig``
  (``smallestai.waves`` alone is lazy: ~10 ms, but no class) / ``import
  websocket`` (websocket-client, its only third-party import on this path: it
  hands out bytes, no numpy)
* pipecat: ``from pipecat.services.smallest.tts import SmallestTTSService`` /
  ``import numpy, websockets`` (the asyncio socket library it uses; its frames
  and resamplers use numpy). The rest it imports (pydantic, PIL, soxr, loguru,
  ...) is pipecat's framework, counted against it.

Interpreter start-up is not in the figure. The two kinds alternate, so drift
affects both alike; each back-to-back pair gives one ratio, reported as median
and p95.

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

_TIMER = "import time; t = time.perf_counter(); {}; print(time.perf_counter() - t)"
#: Per subject: (the import a user writes, the baseline statement).
STATEMENTS = {
    "smallest_sync": ("import smallest_sync", "import numpy, websocket"),
    "smallestai": ("from smallestai.waves import WavesStreamingTTS, TTSConfig", "import websocket"),
    "pipecat": ("from pipecat.services.smallest.tts import SmallestTTSService", "import numpy, websockets"),
}


def _env(cached: bool = True) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    if cached:
        env["PYTHONPYCACHEPREFIX"] = f"/tmp/smallest-sync-bench-pycache-{os.getuid()}"
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # installed packages keep their .pyc; a source tree has none
    return env


def _time(statement: str, env: Optional[Dict[str, str]] = None) -> float:
    out = subprocess.run([sys.executable, "-c", _TIMER.format(statement)], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True, env=env or _env())
    return float(out.stdout.strip().splitlines()[-1])


def _added_modules(statement: str, baseline: str, top: int = 8) -> Dict[str, float]:
    """Self import time (ms) of modules imported by ``statement`` but not by the baseline."""
    def importtime(what: str) -> Dict[str, float]:
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", what], cwd=REPO,
                             capture_output=True, text=True, timeout=60, env=_env()).stderr
        times: Dict[str, float] = {}
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, _, name = (part.strip() for part in line[len("import time:"):].split("|"))
            times[name] = int(self_us) / 1000
        return times

    base = importtime(baseline)
    added = {name: ms for name, ms in importtime(statement).items() if name not in base}
    return dict(sorted(added.items(), key=lambda kv: -kv[1])[:top])


def run(subjects: List[Subject], quick: bool) -> List[Figure]:
    runs = 7 if quick else 21
    ratio = Figure("import_ratio", "import time / import its own deps (socket library, numpy)", "x", 1.0, "<=", 1.2)
    absolute = Figure("import_time", "import time (fresh interpreter)", "ms", 1e3)
    for subject in subjects:
        if subject.name not in STATEMENTS:
            ratio.results[subject.name] = absolute.results[subject.name] = Stat.missing("no import statement")
            continue
        statement, baseline = STATEMENTS[subject.name]
        _time(baseline)  # fill the bytecode cache and the OS page cache for both
        _time(statement)
        pairs = [(_time(statement), _time(baseline)) for _ in range(runs)]
        samples, bases = [p[0] for p in pairs], [p[1] for p in pairs]
        log(f"    {subject.name}: {runs} fresh interpreters per statement")
        ratio.results[subject.name] = Stat.ratio(pairs)
        absolute.results[subject.name] = Stat.of(samples)
        base = Stat.of(bases)
        details: Dict[str, Any] = {
            "statement": statement,
            f"{baseline} (ms)": {"median": round((base.median or 0) * 1e3, 2), "p95": round((base.tail or 0) * 1e3, 2)},
        }
        if not quick:
            source = [_time(statement, _env(cached=False)) for _ in range(3)]
            details["import from source, no bytecode cache (ms, median of 3)"] = round(sorted(source)[1] * 1e3, 1)
        if not quick or (ratio.results[subject.name].median or 0) > 1.2:
            details["largest additions, self ms (-X importtime)"] = _added_modules(statement, baseline)
        ratio.details[subject.name] = details
    return [ratio, absolute]
