"""The peers' own virtualenv, ``benchmarks/.peers-venv``: built on first use, then reused.

:func:`ensure` is idempotent. When the venv's stamp (a hash of
``requirements.txt``, the base interpreter's version and the venv's path)
matches, it returns at once without starting any process. Otherwise it creates
the venv with the running interpreter's ``venv`` module (so the peers get the
same CPython as ours) and ``pip install -r requirements.txt`` into it (about
30 s and 600 MB, mostly pipecat's dependencies; PyAudio compiles against
portaudio19-dev, which ``scripts/bootstrap.sh`` installs), then writes the
stamp. A venv whose python no longer runs is rebuilt from scratch. Concurrent
runs are serialised with a lock file.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from typing import Optional, Tuple

from ..common import REPO, log

VENV = os.path.join(REPO, "benchmarks", ".peers-venv")
REQUIREMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt")
_STAMP = os.path.join(VENV, ".bench-stamp")
_INSTALL_TIMEOUT = 1200.0
_LOCK_TIMEOUT = 1500.0  # another run may be installing
_LOCK_POLL = 0.5


def python() -> str:
    return os.path.join(VENV, "bin", "python")


def _wanted() -> str:
    with open(REQUIREMENTS, "rb") as f:
        requirements = f.read()
    return hashlib.sha256(requirements + sys.version.encode() + VENV.encode()).hexdigest()


def _current() -> Optional[str]:
    try:
        with open(_STAMP) as f:
            return f.read().strip()
    except OSError:
        return None


def ensure() -> Tuple[Optional[str], str]:
    """(the venv's python, "") when it is ready, else (None, why not)."""
    want = _wanted()
    if _current() == want and os.access(python(), os.X_OK):
        return python(), ""
    lock_path = f"{VENV}.lock"
    with open(lock_path, "w") as lock:
        # flock has no timed wait: poll it, bounded (installing takes ~30 s).
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return None, f"{lock_path} held by another run for {_LOCK_TIMEOUT:.0f} s"
                time.sleep(_LOCK_POLL)
        if _current() == want and os.access(python(), os.X_OK):  # built while we waited
            return python(), ""
        return _build(want)


def _build(want: str) -> Tuple[Optional[str], str]:
    try:
        if os.path.exists(VENV) and subprocess.run([python(), "-c", ""], capture_output=True,
                                                   timeout=60).returncode != 0:
            shutil.rmtree(VENV)
    except (OSError, subprocess.SubprocessError):
        shutil.rmtree(VENV, ignore_errors=True)
    try:
        if not os.path.exists(python()):
            log(f"    creating {os.path.relpath(VENV, REPO)} for the peers")
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True, capture_output=True, text=True,
                           timeout=120)
        log(f"    installing the peers ({os.path.relpath(REQUIREMENTS, REPO)}; once, about 30 s) ...")
        started = time.monotonic()
        subprocess.run([python(), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", REQUIREMENTS],
                       check=True, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT, stdin=subprocess.DEVNULL)
        log(f"    peers installed in {time.monotonic() - started:.0f} s")
    except subprocess.CalledProcessError as exc:
        lines = [line for line in (exc.stderr or exc.stdout or "").splitlines()
                 if line.strip() and not line.startswith("WARNING: Location")]
        return None, f"building the peers' venv failed: {' / '.join(lines[-3:])[:300] or exc}"
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"building the peers' venv failed: {exc}"
    with open(_STAMP, "w") as f:
        f.write(want + "\n")
    return python(), ""
