"""The package's public surface, and that it imports where PortAudio is missing."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import smallest_sync


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in dir(smallest_sync) if not name.startswith("_")}  # dir(): lazy names too
    modules = {name for name in public if type(getattr(smallest_sync, name)) is type(sys)}
    assert set(smallest_sync.__all__) - {"__version__"} == public - modules
    for name in smallest_sync.__all__:
        assert hasattr(smallest_sync, name)


def test_every_error_derives_from_smallest_error() -> None:
    from smallest_sync import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), smallest_sync.SmallestError)
    assert issubclass(smallest_sync.SynthesisTimeout, TimeoutError)
    assert issubclass(smallest_sync.ConfigurationError, ValueError)
    assert issubclass(smallest_sync.SmallestConnectionError, ConnectionError)


def test_import_and_headless_use_without_pyaudio() -> None:
    # sys.modules[name] = None is how Python spells "this module is not installed".
    script = textwrap.dedent("""
        import sys
        sys.modules["pyaudio"] = None
        import smallest_sync
        assert "pyaudio" not in [m for m in sys.modules if sys.modules[m] is not None]
        try:
            smallest_sync.DeviceOutput().open(24000)
        except smallest_sync.AudioDeviceError as exc:
            assert "PyAudio is not available" in str(exc), exc
        else:
            raise SystemExit("no AudioDeviceError")
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_lazy_names_import_on_first_use() -> None:
    script = textwrap.dedent("""
        import sys
        import smallest_sync
        assert "smallest_sync.voices" not in sys.modules
        from smallest_sync import VoiceInfo, list_voices
        from smallest_sync.voices import list_voices as direct
        assert list_voices is direct and VoiceInfo.__name__ == "VoiceInfo"
        try:
            smallest_sync.no_such_name
        except AttributeError:
            print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
