"""PortAudio through PyAudio: a quiet start, finding a device, and what it accepts.

Starting PortAudio probes every ALSA and JACK device it knows of, and those
libraries print each failed probe to stderr (80–90 lines on a machine with no
JACK server and no sound card). :func:`open_portaudio` routes them to this
module's logger at DEBUG instead: it installs, once per process, ALSA's error
handler (``snd_lib_error_set_handler``) and JACK's error and info functions
(``jack_set_error_function``), and sets ``JACK_NO_START_SERVER`` unless the
program set it, so PortAudio does not try to start a JACK server either. These
are process-wide: other users of ALSA or JACK in the same program then log there
too.

PyAudio is imported only here, when a device is opened or listed, so ``import
smallest_sync`` works on machines without PortAudio.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

from ..errors import AudioDeviceError
from ..settings import SERVICE_RATES

if TYPE_CHECKING:
    import ctypes

logger = logging.getLogger(__name__)

__all__ = ["SERVICE_RATES", "open_portaudio", "resolve_device", "channels_for", "list_output_devices"]

#: Rates tried, in order, for a device that takes none of the service's as asked.
DEVICE_RATES = (48000, 44100, 32000, 24000, 22050, 16000, 8000)

_quiet_lock = threading.Lock()
_handlers: List[Any] = []  # the C callbacks: kept alive for as long as the process


def _import_pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as exc:  # PortAudio or the PyAudio wheel missing
        raise AudioDeviceError(
            "PyAudio is not available, so audio cannot be played on a device "
            f"({exc}); install PortAudio and PyAudio, or use output='null' or 'file.wav'"
        ) from exc
    return pyaudio


def _quiet_native_libraries() -> None:
    """Route ALSA's and JACK's messages to the logger (once per process)."""
    import ctypes  # only programs that play on a device pay for it

    with _quiet_lock:
        if _handlers:
            return
        os.environ.setdefault("JACK_NO_START_SERVER", "1")
        alsa = _load("libasound.so.2")
        if alsa is not None:
            # void handler(const char *file, int line, const char *function, int err, const char *fmt, ...)
            alsa_handler_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                                 ctypes.c_int, ctypes.c_char_p)

            def alsa_message(file: bytes, line: int, function: bytes, err: int, fmt: bytes) -> None:
                logger.debug("ALSA %s:%d (%s) %s", _text(file), line, _text(function), _text(fmt).strip())

            handler = alsa_handler_type(alsa_message)
            alsa.snd_lib_error_set_handler(handler)
            _handlers.append(handler)
        jack = _load("libjack.so.0")
        if jack is not None:
            jack_handler_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p)

            def jack_message(message: bytes) -> None:
                logger.debug("JACK %s", _text(message).strip())

            handler = jack_handler_type(jack_message)
            jack.jack_set_error_function(handler)
            jack.jack_set_info_function(handler)
            _handlers.append(handler)
        _handlers.append(None)  # done, even where neither library is there


def _load(soname: str) -> Optional["ctypes.CDLL"]:
    """The library PortAudio links to, by its soname (what the dynamic linker uses)."""
    import ctypes

    try:
        return ctypes.CDLL(soname)
    except OSError:
        return None


def _text(data: Optional[bytes]) -> str:
    return data.decode("utf-8", "replace") if data else ""


def open_portaudio() -> Any:
    """A started ``pyaudio.PyAudio``, with the native libraries' noise sent to the log.

    Call ``terminate()`` on it when done. Raises AudioDeviceError without PyAudio.
    """
    pyaudio = _import_pyaudio()
    _quiet_native_libraries()
    return pyaudio.PyAudio()


def _outputs(pa: Any) -> List[Dict[str, Any]]:
    return [info for info in (pa.get_device_info_by_index(i) for i in range(pa.get_device_count()))
            if info.get("maxOutputChannels", 0) > 0]


def resolve_device(pa: Any, device: Union[int, str, None]) -> int:
    """The PortAudio index of ``device``: None (the default output), an index, or a
    name or a part of one (case-insensitive; an exact name wins)."""
    if device is None:
        try:
            return int(pa.get_default_output_device_info()["index"])
        except (IOError, OSError) as exc:
            raise AudioDeviceError(f"no default audio output device: {exc}") from exc
    outputs = [(int(info["index"]), str(info["name"])) for info in _outputs(pa)]
    if isinstance(device, int):
        if any(index == device for index, _ in outputs):
            return device
        raise AudioDeviceError(f"no output device with index {device}; outputs: {outputs}")
    exact = [(index, name) for index, name in outputs if name == device]
    partial = [(index, name) for index, name in outputs if device.lower() in name.lower()]
    matches = exact or partial
    if len(matches) == 1:
        return matches[0][0]
    if matches:
        raise AudioDeviceError(f"device name {device!r} matches several output devices: {matches}; "
                               "give more of the name, or the index")
    raise AudioDeviceError(f"device name {device!r} matches no output device; outputs: {outputs}")


def channels_for(pa: Any, index: int, rate: int) -> Optional[int]:
    """1 or 2: the fewest channels at which device ``index`` plays int16 at ``rate``;
    None when it refuses that rate."""
    import pyaudio

    most = int(pa.get_device_info_by_index(index).get("maxOutputChannels", 0))
    for channels in (1, 2):
        if channels > most:
            break
        try:
            if pa.is_format_supported(rate, output_device=index, output_channels=channels,
                                      output_format=pyaudio.paInt16):
                return channels
        except ValueError:  # PyAudio's way of saying no (with PortAudio's reason)
            continue
    return None


def service_rates(pa: Any, index: int, rates: Sequence[int] = SERVICE_RATES) -> List[int]:
    """Which of ``rates`` device ``index`` plays without resampling."""
    return [rate for rate in rates if channels_for(pa, index, rate) is not None]


def list_output_devices() -> List[Dict[str, Any]]:
    """Output-capable PortAudio devices: dicts with ``index``, ``name``, ``channels``,
    ``default_sample_rate``, ``host_api``, ``is_default``, and ``service_rates``: the
    service's rates (8000, 16000, 24000, 44100) the device plays without resampling."""
    pa = open_portaudio()
    try:
        try:
            default = pa.get_default_output_device_info()["index"]
        except (IOError, OSError):
            default = None
        return [{
            "index": info["index"],
            "name": info["name"],
            "channels": info["maxOutputChannels"],
            "default_sample_rate": info["defaultSampleRate"],
            "host_api": pa.get_host_api_info_by_index(info["hostApi"])["name"],
            "is_default": info["index"] == default,
            "service_rates": sorted(service_rates(pa, int(info["index"]))),
        } for info in _outputs(pa)]
    finally:
        pa.terminate()
