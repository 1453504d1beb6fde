"""Hear what PyAudio really played: record the PulseAudio null sink's monitor.

`scripts/test` starts a private PulseAudio daemon (`scripts/pulse.sh`) whose only
and default sink is the null sink ``nullout`` (24 kHz, mono, s16le) and exports
``PULSE_SERVER``/``PULSE_COOKIE``, so PortAudio's *default* output device plays
into ``nullout``. By hand: ``scripts/pulse.sh start && eval "$(scripts/pulse.sh env)"``.

What the path guarantees (measured, see scripts/pulse.sh for the daemon flags):
* int16 mono played at 24000 Hz is recorded **bit-exactly**, as one contiguous
  run, and everything else in the recording is exact zeros.
* Other rates are resampled twice (in, and out again unless you record at 24000):
  compare with ``find_segment(..., exact=False)``.
* PyAudio's ``stop_stream()``/``close()`` right after the last ``write()`` drops
  what is still buffered (about ``stream.get_output_latency()``); it is never
  heard and so never recorded.

Use::

    from tests.sink import sink_recorder  # noqa: F401  (the fixture)

    def test_plays(sink_recorder):           # a started SinkRecorder, 24 kHz
        play_something()
        rec = sink_recorder.stop()           # np.int16, everything heard so far
        assert find_segment(rec, expected) is not None

The fixture skips the test when no ``nullout`` sink is reachable, unless
``SMALLEST_SYNC_REQUIRE_SINK=1`` (set by scripts/test), where it fails instead:
in CI a missing sink is a broken set-up, not a reason to skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from types import TracebackType
from typing import IO, Iterator, List, Optional, Tuple, Type

import numpy as np
import pytest

SINK = "nullout"
SINK_RATE = 24000
REQUIRE_ENV = "SMALLEST_SYNC_REQUIRE_SINK"


class SinkRecorder:
    """Records ``<sink>.monitor`` with ``parec`` into memory, as mono int16.

    ``start()`` returns once audio is really flowing; ``stop()`` first waits until
    the recording covers everything the sink rendered up to the call (plus
    ``tail`` seconds), then kills parec and joins the reader thread.
    """

    def __init__(self, rate: int = SINK_RATE, *, sink: str = SINK, latency_ms: int = 10) -> None:
        self.rate = rate
        self.device = f"{sink}.monitor"
        # parec's default latency is ~2 s: audio would arrive in 2 s lumps.
        self.latency_ms = latency_ms
        self._cond = threading.Condition()
        self._buf = bytearray()
        self._eof = False
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._stderr: Optional[IO[bytes]] = None
        self._thread: Optional[threading.Thread] = None
        self._t0 = 0.0  # monotonic time the first bytes arrived ...
        self._n0 = 0  # ... and how many samples they were
        self._result: Optional[np.ndarray] = None
        self._down = False

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout: float = 5.0) -> "SinkRecorder":
        if self._proc is not None:
            raise RuntimeError("SinkRecorder already started")
        cmd = [
            "parec", f"--device={self.device}", "--format=s16le", f"--rate={self.rate}",
            "--channels=1", "--raw", f"--latency-msec={self.latency_ms}",
        ]
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self._thread = threading.Thread(target=self._read, name="sink-recorder-parec", daemon=True)
        self._thread.start()
        # The null sink produces (silent) samples continuously, so the first
        # bytes prove the monitor stream is connected and running.
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self._buf) >= 2 or self._eof, timeout)
        if not ok or len(self._buf) < 2:
            err = self._shutdown()
            why = "timed out" if not ok else "parec exited"
            raise RuntimeError(f"recording {self.device} did not start ({why}): {err.strip()}")
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    self._eof = True
                    self._cond.notify_all()
                    return
                if not self._buf:
                    self._t0 = time.monotonic()
                    self._n0 = len(chunk) // 2
                self._buf += chunk
                self._cond.notify_all()

    @property
    def samples(self) -> int:
        """Samples recorded so far."""
        with self._cond:
            return len(self._buf) // 2

    def index_at(self, t: float) -> int:
        """Approximate recording index of monotonic time ``t``.

        The null sink is clocked by the system clock, so samples advance with
        wall time. Measured: a sound handed to PortAudio's default device at
        ``t`` starts 0..8 ms *before* ``index_at(t)``; allow +-20 ms.
        """
        return self._n0 + int(round((t - self._t0) * self.rate))

    def wait_until(self, t: float, timeout: float = 5.0) -> bool:
        """Block until the recording covers monotonic time ``t`` (no polling)."""
        need = self.index_at(t)
        with self._cond:
            return self._cond.wait_for(lambda: len(self._buf) // 2 >= need or self._eof, timeout)

    def snapshot(self) -> np.ndarray:
        """Copy of what has been recorded so far; keeps recording."""
        with self._cond:
            data = bytes(self._buf[: len(self._buf) // 2 * 2])
        return np.frombuffer(data, dtype="<i2").astype(np.int16)

    def stop(self, tail: float = 0.0, timeout: float = 5.0) -> np.ndarray:
        """Record until ``tail`` seconds after now are covered, then stop.

        Idempotent: later calls return the same array.
        """
        if self._result is not None:
            return self._result
        if self._proc is None:
            raise RuntimeError("SinkRecorder was never started")
        if not self._eof:
            self.wait_until(time.monotonic() + tail, timeout)
        self._shutdown()
        self._result = self.snapshot()
        return self._result

    def _shutdown(self) -> str:
        """Kill parec, join the reader, close files; returns parec's stderr.

        Idempotent; safe after a failed start().
        """
        proc = self._proc
        if proc is None or self._down:
            return ""
        self._down = True
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():  # pragma: no cover - would be a bug
                raise RuntimeError("sink recorder thread did not stop")
        if proc.stdout is not None:
            proc.stdout.close()
        err = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            err = self._stderr.read().decode(errors="replace")
            self._stderr.close()
            self._stderr = None
        return err

    def close(self) -> None:
        """Stop without waiting for more audio; idempotent."""
        if self._proc is not None and self._result is None:
            self.stop(timeout=0)

    def __enter__(self) -> "SinkRecorder":
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


# -- availability --------------------------------------------------------------
_availability: Optional[Tuple[bool, str]] = None


def sink_available() -> Tuple[bool, str]:
    """(True, "") if PortAudio's default device would play into ``nullout``."""
    global _availability
    if _availability is None:
        _availability = _check_sink()
    return _availability


def _check_sink() -> Tuple[bool, str]:
    hint = 'run scripts/test, or: scripts/pulse.sh start && eval "$(scripts/pulse.sh env)"'
    for tool in ("pactl", "parec"):
        if shutil.which(tool) is None:
            return False, f"{tool} not installed (Debian: pulseaudio-utils); {hint}"
    server = os.environ.get("PULSE_SERVER", "(default)")
    try:
        out = subprocess.run(
            ["pactl", "get-default-sink"], capture_output=True, text=True, timeout=5,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False, f"PulseAudio at PULSE_SERVER={server} does not answer; {hint}"
    if out.returncode != 0:
        return False, f"no PulseAudio at PULSE_SERVER={server} ({out.stderr.strip()}); {hint}"
    default = out.stdout.strip()
    if default != SINK:
        return False, f"PulseAudio default sink is {default!r}, not {SINK!r}; {hint}"
    return True, ""


def require_sink() -> None:
    """Skip (or fail, under SMALLEST_SYNC_REQUIRE_SINK=1) when there is no sink."""
    ok, reason = sink_available()
    if ok:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"null sink required ({REQUIRE_ENV}=1) but unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture
def sink_recorder() -> Iterator[SinkRecorder]:
    """A started 24 kHz SinkRecorder on ``nullout.monitor``; stopped afterwards."""
    require_sink()
    rec = SinkRecorder().start()
    try:
        yield rec
    finally:
        rec.close()


# -- analysis helpers ------------------------------------------------------------
def find_segment(
    recording: np.ndarray,
    expected: np.ndarray,
    *,
    exact: bool = True,
    threshold: float = 0.98,
) -> Optional[int]:
    """Index where ``expected`` appears in ``recording``, else None.

    exact=True: a bit-identical contiguous run (the 24 kHz path is bit-exact).
    exact=False: best normalised cross-correlation, if it reaches ``threshold``
    (for resampled audio: a 44.1 kHz or 16 kHz round trip correlates > 0.9999).
    """
    rec = np.asarray(recording)
    exp = np.asarray(expected)
    n = len(exp)
    if n == 0:
        raise ValueError("expected is empty")
    if len(rec) < n:
        return None
    if exact:
        return _find_exact(rec.astype(np.int16, copy=False), exp.astype(np.int16, copy=False))
    return _find_correlated(rec.astype(np.float64), exp.astype(np.float64), threshold)


def _find_exact(rec: np.ndarray, exp: np.ndarray) -> Optional[int]:
    n = len(exp)
    nonzero = np.flatnonzero(exp)
    if len(nonzero) == 0:
        raise ValueError("expected is all zeros: it matches any silence")
    # Filter start positions on a few anchor samples, then verify the survivors.
    anchors = nonzero[np.linspace(0, len(nonzero) - 1, num=min(16, len(nonzero))).astype(int)]
    cand = np.arange(len(rec) - n + 1)
    for k in anchors:
        cand = cand[rec[cand + k] == exp[k]]
        if len(cand) == 0:
            return None
    for start in cand:
        if np.array_equal(rec[start : start + n], exp):
            return int(start)
    return None


def _find_correlated(rec: np.ndarray, exp: np.ndarray, threshold: float) -> Optional[int]:
    n = len(exp)
    exp_norm = float(np.sqrt(np.dot(exp, exp)))
    if exp_norm == 0.0:
        raise ValueError("expected is all zeros: correlation is undefined")
    size = 1 << int(len(rec) + n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(rec, size) * np.conj(np.fft.rfft(exp, size)), size)
    corr = corr[: len(rec) - n + 1]
    energy = np.concatenate(([0.0], np.cumsum(rec * rec)))
    window = np.sqrt(np.maximum(energy[n:] - energy[:-n], 0.0))
    # Silent windows cannot match; keep them out of the division.
    ncc = np.where(window > 1e-9 * exp_norm, corr / (np.maximum(window, 1e-300) * exp_norm), 0.0)
    best = int(np.argmax(ncc))
    return best if ncc[best] >= threshold else None


def active_regions(
    recording: np.ndarray,
    rate: int,
    threshold: int = 100,
    *,
    min_gap: float = 0.02,
) -> List[Tuple[float, float]]:
    """(start_s, end_s) of the parts where ``|sample| > threshold``.

    Quiet stretches shorter than ``min_gap`` seconds (zero crossings, pauses
    inside a word) do not split a region.
    """
    loud = np.flatnonzero(np.abs(np.asarray(recording).astype(np.int32)) > threshold)
    if len(loud) == 0:
        return []
    breaks = np.flatnonzero(np.diff(loud) > max(1, int(min_gap * rate)))
    starts = np.concatenate(([loud[0]], loud[breaks + 1]))
    ends = np.concatenate((loud[breaks], [loud[-1]])) + 1
    return [(float(s) / rate, float(e) / rate) for s, e in zip(starts, ends)]
