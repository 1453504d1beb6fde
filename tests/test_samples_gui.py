"""The GUI samples, run as a user runs them: a real window on the X display, real clicks, real audio.

Each sample's ``--smoke DIR`` mode clicks Speak through its own widget, waits on its
GUI loop until words are highlighted, saves a screenshot, clicks Stop and writes what
it saw to ``DIR/<sample>.json``. Here we check that record against the text, the
screenshot's pixels, and what the PulseAudio null sink actually heard meanwhile.
Screenshots are also kept in test-artifacts/screenshots/ for CI.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List

import numpy as np
import pytest

from .sink import REQUIRE_ENV, SinkRecorder, active_regions

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "screenshots"
SAMPLES = ["tk_reader", "qt_reader"]


def require_display() -> None:
    """Skip by hand without X; under scripts/test (which provides Xvfb) fail instead."""
    if os.environ.get("DISPLAY"):
        return
    message = "needs an X display: run scripts/test, or xvfb-run -a .venv/bin/python -m pytest ..."
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_toolkit(sample: str) -> None:
    if sample == "qt_reader":
        pytest.importorskip("PySide6.QtWidgets", reason="PySide6 is not importable (it needs Python 3.10+)")


def run_sample(sample: str, out_dir: Path, *args: str, env: Dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("SMALLEST_API_KEY", "QT_QPA_PLATFORM")}
    environment.update(env)  # without QT_QPA_PLATFORM, Qt draws a real (xcb) window on $DISPLAY
    try:
        return subprocess.run([sys.executable, str(REPO / "samples" / f"{sample}.py"), *args, "--smoke", str(out_dir)],
                              env=environment, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    finally:
        for shot in out_dir.glob("*.png"):  # kept for CI, whatever happened
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, ARTIFACTS / shot.name)


def is_in_order(words: List[str], text: str) -> bool:
    """``words`` are words of ``text``, in the order they appear (some may be skipped)."""
    remaining = iter(text.split())
    return all(word in remaining for word in words)


def check_screenshot(path: Path, size: List[int], highlight: str) -> None:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        assert list(image.size) == size
        colours = image.convert("RGB").getcolors(size[0] * size[1]) or []
    rgb = tuple(int(highlight[i:i + 2], 16) for i in (1, 3, 5))
    highlighted = sum(count for count, colour in colours if colour == rgb)
    assert highlighted >= 100, f"the highlight ({highlight}) is not in the screenshot"
    assert len(colours) > 20, "the screenshot is nearly blank"


def loud_seconds(recording: np.ndarray, rate: int) -> float:
    return sum(end - start for start, end in active_regions(recording, rate))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sample", SAMPLES)
def test_reader_highlights_words_as_they_are_heard_and_stop_silences(
        sample: str, tmp_path: Path, sink_recorder: SinkRecorder) -> None:
    require_toolkit(sample)
    require_display()
    result = run_sample(sample, tmp_path, "--emulator", env={})
    recording = sink_recorder.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    seen: Dict[str, Any] = json.loads((tmp_path / f"{sample}.json").read_text())

    # Highlighted, in the widget, as it was spoken: words of the text, in order.
    assert len(seen["words"]) >= 3 and is_in_order(seen["words"], seen["text"]), seen["words"]
    assert seen["statuses"][-1] == "stopped" and "speaking" in seen["statuses"], seen["statuses"]
    assert not [status for status in seen["statuses"] if status.startswith("error")]
    assert seen["after_stop"] == {"status": "stopped", "highlighted": 0, "idle": True}
    if sample == "qt_reader":
        assert seen["platform"] == "xcb"  # a real X window, not the offscreen plugin
    check_screenshot(Path(seen["screenshot"]), seen["window"], seen["highlight"])

    # Heard on the sink while it spoke; silent once Stop was clicked, the window still open.
    rate = sink_recorder.rate
    spoken = recording[sink_recorder.index_at(seen["spoke_at"]):sink_recorder.index_at(seen["stopped_at"])]
    assert loud_seconds(spoken, rate) > 0.2, "no speech was heard before Stop"
    after_stop = recording[sink_recorder.index_at(seen["stopped_at"] + 0.2):sink_recorder.index_at(seen["quiet_until"])]
    assert len(after_stop) > 0.2 * rate and not active_regions(after_stop, rate), "sound after Stop"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sample", SAMPLES)
def test_reader_without_a_key_says_so_in_the_window(sample: str, tmp_path: Path) -> None:
    require_toolkit(sample)
    require_display()
    result = run_sample(sample, tmp_path, env={})  # the real service, but no SMALLEST_API_KEY
    assert result.returncode == 1
    assert f"{sample} smoke: FAILED: error: no API key" in result.stderr
    assert "Traceback" not in result.stderr


def load_sample(sample: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(sample, REPO / "samples" / f"{sample}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
