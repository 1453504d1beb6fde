"""Word events delivered on a GUI's main thread: Tk on a real (virtual) display, Qt offscreen."""
from __future__ import annotations

import os
import threading
from typing import Callable, List

import pytest

from smallest_sync import EndEvent, MemoryOutput, Speaker, WordEvent
from smallest_sync.gui import QtDelivery, TkDelivery

TEXT = "Highlight each word as it is heard"


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (scripts/test runs under xvfb-run)")
def test_tk_program_gets_word_events_on_its_main_thread(make_speaker: Callable[..., Speaker]) -> None:
    import tkinter

    root = tkinter.Tk()
    try:
        label = tkinter.Label(root, text="")
        label.pack()
        delivery = TkDelivery(root)
        shown: List[str] = []
        threads = set()

        def highlight(event: WordEvent) -> None:
            threads.add(threading.current_thread() is threading.main_thread())
            label.configure(text=event.word)  # touching a widget: only legal on Tk's thread
            shown.append(label.cget("text"))

        speaker = make_speaker(output=MemoryOutput(), on_word=delivery.wrap(highlight),
                               on_end=delivery.wrap(lambda event: root.quit()))
        speaker.say(TEXT)
        root.after(10000, root.quit)  # a bound, should the end never come
        root.mainloop()
        delivery.close()
        assert shown == TEXT.split()
        assert threads == {True}
    finally:
        root.destroy()


def test_qt_delivery_runs_handlers_on_the_gui_thread(make_speaker: Callable[..., Speaker], monkeypatch: pytest.MonkeyPatch) -> None:
    QtCore = pytest.importorskip("PySide6.QtCore")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    app = QtCore.QCoreApplication.instance() or QtCore.QCoreApplication([])
    delivery = QtDelivery()
    words: List[str] = []
    on_gui_thread = set()

    def on_word(event: WordEvent) -> None:
        on_gui_thread.add(QtCore.QThread.currentThread() is app.thread())
        words.append(event.word)

    def on_end(event: EndEvent) -> None:
        app.quit()

    speaker = make_speaker(output=MemoryOutput(), on_word=delivery.wrap(on_word), on_end=delivery.wrap(on_end))
    speaker.say(TEXT)
    QtCore.QTimer.singleShot(10000, app.quit)
    app.exec()
    assert words == TEXT.split() and on_gui_thread == {True}
