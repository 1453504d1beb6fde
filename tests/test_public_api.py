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


def test_module_paths_users_import_keep_working() -> None:
    import smallest_sync.audio as audio
    import smallest_sync.gui as gui
    import smallest_sync.text as text

    assert audio.DeviceOutput is smallest_sync.DeviceOutput and audio.MemoryOutput is smallest_sync.MemoryOutput
    assert callable(audio.list_output_devices) and callable(audio.make_output)
    assert gui.TkDelivery and gui.QtDelivery and gui.WordFinder and callable(text.split_text)


def _imports(path: "pathlib.Path", package: str) -> "set[str]":
    """Every smallest_sync module ``path`` imports, TYPE_CHECKING blocks included."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("smallest_sync"):
                continue
            for alias in node.names:  # "from . import x" may name a module
                found.add(f"{target}.{alias.name}")
            found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("smallest_sync"))
    return found


def test_no_import_cycles_inside_the_package() -> None:
    import pathlib

    root = pathlib.Path(smallest_sync.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        modules[name] = (path, name if is_package else name.rpartition(".")[0])
    graph = {name: {m for m in _imports(path, package) if m in modules and m != name}
             for name, (path, package) in modules.items()}
    # A package imports what it re-exports; only its modules' own imports can make a cycle.
    for name in list(graph):
        graph[name] -= {p for p in graph[name] if name.startswith(p + ".")}
    allowed = {frozenset({"smallest_sync.events", "smallest_sync.utterance"})}  # two value types
    cycles = []

    def visit(node: str, path: "list[str]") -> None:
        for nxt in graph[node]:
            if nxt in path:
                cycle = path[path.index(nxt):]
                if frozenset(cycle) not in allowed:
                    cycles.append(cycle + [nxt])
            elif len(path) < 12:
                visit(nxt, path + [nxt])

    for start in graph:
        visit(start, [start])
    assert not cycles, cycles[:5]
