"""The ALSA test devices: sound cards that refuse rates like a Raspberry Pi's, and record.

``scripts/bootstrap.sh`` compiles ``scripts/alsa/smallest_rate.c`` (an ALSA
``snd_pcm_ioplug`` plugin) into ``.venv/alsa/`` and writes ``.venv/alsa/devices.conf``,
which the fixtures below add to ``ALSA_CONFIG_PATH`` for their test (and the
programs it starts). Nowhere else: listed in every test, a device would become
PortAudio's default output whenever the sound server is gone. By hand::

    export ALSA_CONFIG_PATH="${ALSA_CONFIG_PATH:-/usr/share/alsa/alsa.conf}:$PWD/.venv/alsa/devices.conf"

Two PortAudio output devices (whichever sound server this run uses):

* ``usb48``: 44100 or 48000 Hz, 1-2 channels, S16_LE, like a USB DAC on a Pi;
* ``hdmi48``: 48000 Hz stereo only, like a Pi's HDMI output.

Any other rate is refused the way hardware refuses it, with no resampling ``plug``
in front: PortAudio answers ``paInvalidSampleRate`` (-9997); more channels than the
device has get ``paInvalidChannelCount`` (-9998). What PortAudio adapts by itself on
real cards it adapts here too: other sample formats are converted to S16_LE, and
mono on the stereo-only device is played on both channels.

The devices play in real time: the hardware pointer starts at 0 on ``start`` and
advances with ``CLOCK_MONOTONIC`` at the stream's rate in 1 ms steps (a USB DAC's
packets), never past what was written. Underrun: when the buffer runs dry the
stream goes to XRUN and the next write gets -EPIPE, as from real hardware
(PortAudio then prepares and restarts it, which starts a new *run*). ``drop``
(``Pa_AbortStream``, ``Pa_CloseStream``, and PortAudio's ``Pa_StopStream`` too,
which does not drain) stops at once; ``drain`` plays to the last frame.

Files, per device, in ``$SMALLEST_SYNC_DEVICE_DIR`` (the fixtures set a fresh one per
test; without it, ``.venv/alsa/capture/``), created at the first ``prepare``:

``<device>.s16le``
    every frame the device received, appended in order: raw interleaved S16_LE.
``<device>.log``
    one line per event, fields separated by single spaces::

        <t_ns> <event> <run> <frames> <hw> [key=value ...]

    ``t_ns`` is ``CLOCK_MONOTONIC`` in ns (``time.monotonic_ns()``); ``event`` one of
    ``prepare start write xrun drained stop close``; ``run`` is ``<pid>.<n>``, one
    prepare..stop stretch of a stream, whose frames lie contiguously in the capture
    file; ``frames`` counts the frames the run received so far, ``hw`` those it
    played (the hardware pointer). ``prepare`` adds ``rate= channels= offset=``
    (byte offset of the run's first frame in the capture) ``buffer= period=``
    (frames) ``device=``. At ``start``, ``t_ns`` is when frame 0 of the run starts
    playing, so frame ``k`` plays at ``t_ns + k * 1e9 / rate`` if ``k`` is below the
    run's final ``hw``; ``xrun`` is stamped with when the buffer ran dry,
    ``drained`` with when the last frame ended, ``stop`` with when it was dropped.

One stream at a time per device, as with the hardware: two streams writing at once
would interleave their chunks in one capture file.

Use::

    from tests.devices import rate_device  # noqa: F401  (the fixture)

    def test_plays(rate_device):
        pa = pyaudio.PyAudio()
        stream = pa.open(format=pyaudio.paInt16, channels=1, rate=48000, output=True,
                         output_device_index=rate_device.index(pa))
        ...
        heard = rate_device.capture()[:, 0]       # np.int16, what the device received
        when = rate_device.time_of(1000)          # monotonic s when frame 1000 played

The fixtures skip the test when the device is not set up, unless
``SMALLEST_SYNC_REQUIRE_SINK=1`` (scripts/test), where they fail instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pytest

from tests.sink import REQUIRE_ENV

REPO = Path(__file__).resolve().parent.parent
ALSA_DIR = REPO / ".venv" / "alsa"
PLUGIN = ALSA_DIR / "libasound_module_pcm_smallest_rate.so"
DEVICES_CONF = ALSA_DIR / "devices.conf"
#: Where ALSA finds its configuration when ALSA_CONFIG_PATH is not set.
ALSA_DEFAULT_CONFIG = "/usr/share/alsa/alsa.conf"
#: The environment variable the ALSA config reads the capture directory from.
DIR_ENV = "SMALLEST_SYNC_DEVICE_DIR"
#: Which sound server scripts/test (or ``scripts/<server>.sh env``) set up.
SERVER_ENV = "SMALLEST_SYNC_SOUND_SERVER"
#: The hardware pointer moves in steps this long (``step_us`` in the ALSA config).
STEP_S = 0.001


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    rates: Tuple[int, ...]
    channels: Tuple[int, ...]


USB48 = DeviceSpec("usb48", (44100, 48000), (1, 2))
HDMI48 = DeviceSpec("hdmi48", (48000,), (2,))
DEVICES = {spec.name: spec for spec in (USB48, HDMI48)}


@dataclass(frozen=True)
class Event:
    """One line of the device log."""

    t_ns: int
    event: str
    run: str
    frames: int
    hw: int
    extra: Dict[str, str]


@dataclass
class Run:
    """One prepare..stop stretch of a stream on the device."""

    id: str
    rate: int
    channels: int
    offset: int  # byte offset of the run's first frame in the capture file
    buffer: int
    period: int
    received: int = 0  # frames written by the application
    played: int = 0  # frames that played (the final hardware pointer)
    start_ns: Optional[int] = None
    end: str = ""  # "drained", "stop", "xrun", "close", or "" while it is open
    end_ns: Optional[int] = None
    events: List[Event] = field(default_factory=list)
    frames: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.int16))

    def time_ns(self, k: int) -> int:
        """``CLOCK_MONOTONIC`` ns at which frame ``k`` of this run started playing."""
        if self.start_ns is None or not 0 <= k < self.played:
            raise ValueError(f"frame {k} of run {self.id} never played ({self.played} did)")
        return self.start_ns + (k * 1_000_000_000) // self.rate

    def time(self, k: int) -> float:
        """Like ``time_ns`` in seconds, comparable with ``time.monotonic()``."""
        return self.time_ns(k) / 1e9

    @property
    def heard(self) -> np.ndarray:
        """The frames that played, ``(played, channels)`` int16."""
        return self.frames[: self.played]


class AlsaDevice:
    """One test device and its capture/log files in ``directory``."""

    def __init__(self, spec: DeviceSpec, directory: Path) -> None:
        self.spec = spec
        self.name = spec.name  # the ALSA PCM name, which is also PortAudio's device name
        self.directory = directory
        self.capture_path = directory / f"{spec.name}.s16le"
        self.log_path = directory / f"{spec.name}.log"

    def __repr__(self) -> str:
        return f"AlsaDevice({self.name!r}, {str(self.directory)!r})"

    def index(self, pa: Any) -> int:
        """This device's PortAudio index in ``pa`` (a ``pyaudio.PyAudio``)."""
        return find_device_index(pa, self.name)

    # -- reading back ---------------------------------------------------------
    def events(self) -> List[Event]:
        if not self.log_path.exists():
            return []
        return [parse_line(line) for line in self.log_path.read_text().splitlines() if line]

    def runs(self, *, with_frames: bool = True) -> List[Run]:
        """The runs in log order; by default only those that received frames
        (PortAudio prepares a device just to test a format)."""
        raw = self.capture_path.read_bytes() if self.capture_path.exists() else b""
        runs: Dict[str, Run] = {}
        for ev in self.events():
            run = runs.get(ev.run)
            if ev.event == "prepare":
                run = runs[ev.run] = Run(
                    ev.run, int(ev.extra["rate"]), int(ev.extra["channels"]),
                    int(ev.extra["offset"]), int(ev.extra["buffer"]), int(ev.extra["period"]),
                )
            if run is None:
                raise ValueError(f"{self.log_path}: {ev.event} of run {ev.run} before its prepare")
            run.events.append(ev)
            run.received, run.played = ev.frames, ev.hw
            if ev.event == "start":
                run.start_ns = ev.t_ns
            elif ev.event in ("xrun", "drained", "stop", "close") and not run.end:
                run.end, run.end_ns = ev.event, ev.t_ns  # the first one: a stop after an xrun is cleanup
        for run in runs.values():
            size = 2 * run.channels
            chunk = raw[run.offset : run.offset + run.received * size]
            if len(chunk) != run.received * size:
                raise ValueError(f"{self.capture_path}: run {run.id} is cut short")
            run.frames = np.frombuffer(chunk, dtype="<i2").astype(np.int16).reshape(-1, run.channels)
        return [r for r in runs.values() if r.received or not with_frames]

    def capture(self) -> np.ndarray:
        """Every frame received, all runs in order, as ``(frames, channels)`` int16."""
        runs = self.runs()
        if not runs:
            return np.zeros((0, 1), np.int16)
        channels = {r.channels for r in runs}
        if len(channels) > 1:
            raise ValueError(f"runs with different channel counts {channels}: use runs()")
        return np.concatenate([r.frames for r in runs])

    def time_of(self, n: int) -> Optional[float]:
        """Monotonic time (s) at which frame ``n`` of ``capture()`` played, or None
        if it never did (dropped by a stop, or written after an underrun)."""
        for run in self.runs():
            if n < run.received:
                return run.time(n) if n < run.played else None
            n -= run.received
        raise IndexError("frame beyond the capture")


def parse_line(line: str) -> Event:
    fields = line.split(" ")
    if len(fields) < 5:
        raise ValueError(f"bad device log line: {line!r}")
    extra = dict(f.split("=", 1) for f in fields[5:])
    return Event(int(fields[0]), fields[1], fields[2], int(fields[3]), int(fields[4]), extra)


def find_device_index(pa: Any, name: str) -> int:
    """PortAudio index of the output device called ``name``."""
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if info["name"] == name and info["maxOutputChannels"] > 0:
            return i
    raise LookupError(f"PortAudio lists no output device {name!r}")


# -- which ALSA plugin a PCM name opens ---------------------------------------------
def alsa_pcm_description(name: str = "default") -> str:
    """First line of ``snd_pcm_dump()`` for ALSA PCM ``name`` as this process sees it,
    e.g. ``"ALSA <-> PipeWire PCM I/O Plugin"``: where PortAudio's device goes."""
    lib = ctypes.CDLL(ctypes.util.find_library("asound") or "libasound.so.2")
    pcm = ctypes.c_void_p()
    err = lib.snd_pcm_open(ctypes.byref(pcm), name.encode(), 0, 1)  # PLAYBACK, NONBLOCK
    if err < 0:
        raise OSError(-err, f"snd_pcm_open({name!r}) failed: error {err}")
    out = ctypes.c_void_p()
    try:
        lib.snd_output_buffer_open(ctypes.byref(out))
        lib.snd_pcm_dump(pcm, out)
        buf = ctypes.c_char_p()
        size = lib.snd_output_buffer_string(out, ctypes.byref(buf))
        text = ctypes.string_at(buf, size).decode(errors="replace")
    finally:
        if out:
            lib.snd_output_close(out)
        lib.snd_pcm_close(pcm)
    return text.splitlines()[0] if text else ""


# -- availability ------------------------------------------------------------------
_availability: Optional[Tuple[bool, str]] = None


def devices_available() -> Tuple[bool, str]:
    """(True, "") if PortAudio lists the test devices."""
    global _availability
    if _availability is None:
        _availability = _check_devices()
    return _availability


def config_path_with_devices(config_path: Optional[str]) -> str:
    """``ALSA_CONFIG_PATH`` value ``config_path`` (None/empty: ALSA's own) plus the devices."""
    files = [f for f in (config_path or ALSA_DEFAULT_CONFIG).split(":") if f]
    if str(DEVICES_CONF) not in files:
        files.append(str(DEVICES_CONF))
    return ":".join(files)


def _check_devices() -> Tuple[bool, str]:
    """Called with ALSA_CONFIG_PATH naming the devices."""
    hint = "run scripts/test, or scripts/bootstrap.sh"
    for needed in (PLUGIN, DEVICES_CONF):
        if not needed.exists():
            return False, f"ALSA test device not set up ({needed} missing); {hint}"
    config = os.environ.get("ALSA_CONFIG_PATH", "")
    import pyaudio

    pa = pyaudio.PyAudio()
    try:
        for spec in DEVICES.values():
            find_device_index(pa, spec.name)
    except LookupError as exc:
        return False, f"{exc} (ALSA_CONFIG_PATH={config}); {hint}"
    finally:
        pa.terminate()
    return True, ""


def require_devices() -> None:
    """Skip (or fail, under SMALLEST_SYNC_REQUIRE_SINK=1) when the devices are missing."""
    ok, reason = devices_available()
    if ok:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"ALSA test device required ({REQUIRE_ENV}=1) but unavailable: {reason}")
    pytest.skip(reason)


def _device(spec: DeviceSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AlsaDevice:
    # ALSA reads both whenever a device is opened (and PortAudio lists devices at
    # each PyAudio()), in this process and in the programs the test starts.
    monkeypatch.setenv("ALSA_CONFIG_PATH", config_path_with_devices(os.environ.get("ALSA_CONFIG_PATH")))
    directory = tmp_path / "alsa-devices"
    directory.mkdir(exist_ok=True)
    monkeypatch.setenv(DIR_ENV, str(directory))
    require_devices()
    return AlsaDevice(spec, directory)


@pytest.fixture
def rate_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AlsaDevice]:
    """``usb48``: 44100/48000 Hz, 1-2 channels; fresh capture and log for the test."""
    yield _device(USB48, tmp_path, monkeypatch)


@pytest.fixture
def hdmi_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AlsaDevice]:
    """``hdmi48``: 48000 Hz stereo only; fresh capture and log for the test."""
    yield _device(HDMI48, tmp_path, monkeypatch)
