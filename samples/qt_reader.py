"""A Qt (PySide6) reader: type text, press Speak, watch each word light up as it is heard.

What it shows:
- the window never freezes: Speak queues the text with ``say()`` (returns at once),
  Stop calls ``interrupt()`` (silence now, from the GUI thread);
- events cross threads as Qt signals: Speaker callbacks run on the library's
  ``smallest-events`` thread and only *emit* signals declared on the window; queued
  connections run the slots on the GUI thread. Named signals are the usual Qt way to
  hand work from any thread to widgets, and keep the wiring in one readable place
  (``smallest_sync.gui.QtDelivery`` does the same in one line, if you prefer);
- ``on_word`` fires when a word is *heard*; the slot highlights it with an
  ExtraSelection, which colours the text without touching the document or its undo;
- voice and speed go to ``update()`` before each request (same socket, no reconnect);
- a status line (connecting, speaking, done, stopped, error) instead of tracebacks;
- ``speaker.close()`` in ``closeEvent``, so every library thread is joined.

Run:
    .venv/bin/python samples/qt_reader.py --emulator                # offline, bundled emulator
    SMALLEST_API_KEY=sk_... .venv/bin/python samples/qt_reader.py    # the real service
    .venv/bin/python samples/qt_reader.py --emulator --smoke DIR     # self-test, see Smoke below

Keys: Ctrl+Enter speaks, Escape stops. Any voice id can be typed into the voice box;
the listed ones report word timings (needed for the highlight).
"""
from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import logging
import os
import sys
import time
from typing import Any, Callable, Dict, Optional

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent, QColor, QKeySequence, QTextCursor
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (QApplication, QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QMainWindow,
                               QPlainTextEdit, QPushButton, QTextEdit, QVBoxLayout, QWidget)

from smallest_sync import EndEvent, ErrorEvent, SmallestError, Speaker, StartEvent, Utterance, WordEvent
from smallest_sync.gui import WordFinder

VOICES = ["meher", "liam", "avery", "devansh", "kartik", "maithili"]
TEXT = ("Smallest sync reads this text aloud, and the window highlights every word "
        "as it is heard. Press Stop at any moment to silence it at once.")
HIGHLIGHT = "#ffd54f"


class ReaderWindow(QMainWindow):
    # Emitted on the library's thread, received on the GUI thread (see connect below).
    started = Signal(object)  # StartEvent
    word_heard = Signal(object)  # WordEvent
    ended = Signal(object)  # EndEvent
    failed = Signal(object)  # ErrorEvent
    status_changed = Signal(str)  # for whoever wants to follow along (the smoke test does)

    def __init__(self, speaker_options: Dict[str, Any]) -> None:
        super().__init__()
        self.setWindowTitle("smallest_sync reader (Qt)")
        self.current: Optional[Utterance] = None  # what Speak started last
        self.finder = WordFinder("", utf16=True)

        self.editor = QPlainTextEdit(TEXT)
        font = self.editor.font()
        font.setPointSize(13)
        self.editor.setFont(font)
        self.voice = QComboBox(editable=True)  # any voice id may be typed
        self.voice.addItems(VOICES)
        self.speed = QDoubleSpinBox(minimum=0.5, maximum=2.0, singleStep=0.1, value=1.0, decimals=1)
        self.speak_button, self.stop_button = QPushButton("Speak"), QPushButton("Stop")
        self.speak_button.setShortcut(QKeySequence("Ctrl+Return"))
        self.stop_button.setShortcut(QKeySequence("Escape"))
        self.speak_button.clicked.connect(self.speak)
        self.stop_button.clicked.connect(self.stop)
        self.status = QLabel("ready", wordWrap=True)  # wraps a long error instead of clipping it

        controls = QHBoxLayout()
        for widget in (QLabel("Voice"), self.voice, QLabel("Speed"), self.speed):
            controls.addWidget(widget)
        controls.addStretch()
        controls.addWidget(self.speak_button)
        controls.addWidget(self.stop_button)
        layout = QVBoxLayout()
        layout.addWidget(self.editor)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        central = QWidget()
        central.setLayout(layout)
        self.setCentralWidget(central)
        self.resize(640, 280)

        # Queued: the slot runs in this window's thread (the GUI thread) whichever
        # thread emits. Slots must be methods of a QObject, not lambdas, for that.
        queued = Qt.ConnectionType.QueuedConnection
        self.started.connect(self.on_start, queued)
        self.word_heard.connect(self.on_word, queued)
        self.ended.connect(self.on_end, queued)
        self.failed.connect(self.on_error, queued)
        self.speaker: Optional[Speaker] = None
        try:
            self.speaker = Speaker(**speaker_options, on_start=self.started.emit, on_word=self.word_heard.emit,
                                   on_end=self.ended.emit, on_error=self.failed.emit)
        except SmallestError as exc:  # no API key, no audio device: say so in the window
            self.set_status(f"error: {exc}")
            self.speak_button.setEnabled(False)

    def set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status_changed.emit(text)

    # ----- buttons (GUI thread; none of these calls blocks) ----------------------
    @Slot()
    def speak(self) -> None:
        text = self.editor.toPlainText()
        if self.speaker is None or not text.strip():
            return
        try:
            self.speaker.interrupt()  # Speak while speaking starts over
            self.speaker.update(voice=self.voice.currentText().strip() or None, speed=self.speed.value())
            self.current = self.speaker.say(text)
        except SmallestError as exc:  # a malformed voice id, say
            self.set_status(f"error: {exc}")
            return
        self.finder = WordFinder(text, utf16=True)
        self.editor.setExtraSelections([])
        self.editor.setReadOnly(True)  # edits would shift the spans being highlighted
        self.set_status("connecting…")

    @Slot()
    def stop(self) -> None:
        if self.speaker is not None:
            self.speaker.interrupt()  # on_end follows, with the utterance interrupted

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.speaker is not None:
            self.speaker.close()  # drops speech, closes the socket, joins the library's threads
        event.accept()

    # ----- speech events (slots, on the GUI thread) --------------------------------
    # Events of an utterance that Speak has since replaced are ignored.
    @Slot(object)
    def on_start(self, event: StartEvent) -> None:
        if event.utterance is self.current:
            self.set_status("speaking")

    @Slot(object)
    def on_word(self, event: WordEvent) -> None:
        span = self.finder.find(event.word) if event.utterance is self.current else None
        if span is None:
            return  # keep the last highlight rather than guess
        cursor = QTextCursor(self.editor.document())
        cursor.setPosition(span[1])
        self.editor.setTextCursor(cursor)  # scrolls the word into view
        cursor.setPosition(span[0], QTextCursor.MoveMode.KeepAnchor)
        selection = QTextEdit.ExtraSelection()
        selection.cursor = cursor
        selection.format.setBackground(QColor(HIGHLIGHT))
        self.editor.setExtraSelections([selection])

    @Slot(object)
    def on_end(self, event: EndEvent) -> None:
        utterance = event.utterance
        if utterance is not self.current:
            return
        self.current = None
        self.editor.setExtraSelections([])
        self.editor.setReadOnly(False)
        if utterance.error is not None:
            self.set_status(f"error: {utterance.error}")
        else:
            self.set_status("stopped" if utterance.interrupted else "done")

    @Slot(object)
    def on_error(self, event: ErrorEvent) -> None:
        if event.utterance is None or event.utterance is self.current:
            self.set_status(f"error: {event.error}")


class Smoke:
    """``--smoke DIR``: drive the real widgets like a user would, for tests/test_samples_gui.py.

    Fills the text, clicks Speak, waits (with QTimer, never blocking Qt) until a few
    words have been highlighted, saves DIR/qt_reader.png, clicks Stop, checks the
    window went quiet, writes DIR/qt_reader.json and closes the window.
    """

    POLL_MS, WORDS, QUIET_MS, TIMEOUT = 20, 3, 500, 30.0

    def __init__(self, window: ReaderWindow, out_dir: str) -> None:
        self.window, self.dir = window, out_dir
        self.exit_code = 1
        self.deadline = time.monotonic() + self.TIMEOUT
        self.result: Dict[str, Any] = {"text": TEXT, "highlight": HIGHLIGHT, "words": [], "statuses": [],
                                       "platform": QApplication.platformName()}  # xcb: a real X window
        window.status_changed.connect(self.result["statuses"].append)
        QTimer.singleShot(100, self.click_speak)

    def status(self) -> str:
        return self.window.status.text()

    def click_speak(self) -> None:
        self.window.editor.setPlainText(TEXT)
        self.result["spoke_at"] = time.monotonic()
        QTest.mouseClick(self.window.speak_button, Qt.MouseButton.LeftButton)
        self.poll(self.until_words_heard)

    def poll(self, step: Callable[[], None]) -> None:
        if time.monotonic() > self.deadline:
            self.fail(f"timed out in {step.__name__}; status {self.status()!r}")
        elif self.status().startswith("error"):
            self.fail(self.status())
        else:
            step()

    def until_words_heard(self) -> None:
        words, selections = self.result["words"], self.window.editor.extraSelections()
        heard = selections[0].cursor.selectedText() if selections else ""
        if heard and (not words or words[-1] != heard):
            words.append(heard)
        if len(words) >= self.WORDS and heard:
            image = self.window.grab()  # renders the window as it is now, highlight included
            self.result["window"] = [image.width(), image.height()]
            self.result["screenshot"] = path = os.path.join(self.dir, "qt_reader.png")
            if not image.save(path):
                return self.fail(f"could not save {path}")
            self.result["stopped_at"] = time.monotonic()
            QTest.mouseClick(self.window.stop_button, Qt.MouseButton.LeftButton)
            QTimer.singleShot(self.QUIET_MS, lambda: self.poll(self.until_quiet))
        else:
            QTimer.singleShot(self.POLL_MS, lambda: self.poll(self.until_words_heard))

    def until_quiet(self) -> None:
        window = self.window
        self.result["quiet_until"] = time.monotonic()
        self.result["after_stop"] = {
            "status": self.status(), "highlighted": len(window.editor.extraSelections()),
            "idle": window.speaker is not None and window.speaker.wait_idle(0),
        }
        if self.result["after_stop"] != {"status": "stopped", "highlighted": 0, "idle": True}:
            return self.fail(f"not quiet after Stop: {self.result['after_stop']}")
        with open(os.path.join(self.dir, "qt_reader.json"), "w") as file:
            json.dump(self.result, file, indent=1)
        self.exit_code = 0
        window.close()

    def fail(self, message: str) -> None:
        print(f"qt_reader smoke: FAILED: {message}", file=sys.stderr)
        self.window.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="A Qt reader with live word highlighting.")
    parser.add_argument("--emulator", action="store_true", help="run offline against the bundled emulator")
    parser.add_argument("--smoke", metavar="DIR",
                        help="self-test: click through, save a screenshot and a JSON result in DIR")
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")  # library warnings to the console
    if args.smoke:
        os.makedirs(args.smoke, exist_ok=True)
        faulthandler.dump_traceback_later(60, exit=True)  # the hard bound, should Qt's loop itself hang
    app = QApplication(sys.argv[:1])
    with contextlib.ExitStack() as stack:
        options: Dict[str, Any] = {}  # the real service; the key comes from $SMALLEST_API_KEY
        if args.emulator:
            from smallest_sync.emulator import Emulator, EmulatorConfig

            emulator = stack.enter_context(Emulator(EmulatorConfig(engine="auto")))  # espeak-ng words if installed
            options = {"api_key": "sk_emulator", "base_url": emulator.base_url}
        window = ReaderWindow(options)
        window.show()
        smoke = Smoke(window, args.smoke) if args.smoke else None
        app.exec()  # returns once the window is closed
    return smoke.exit_code if smoke else 0


if __name__ == "__main__":
    sys.exit(main())
