"""Word events delivered on a GUI's main thread: Tk on a real (virtual) display, Qt offscreen."""
from __future__ import annotations

import gc
import os
import threading
import weakref
from typing import Callable, List

import pytest

from smallest_sync import EndEvent, MemoryOutput, Speaker, WordEvent
from smallest_sync.gui import QtDelivery, TkDelivery, WordFinder

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


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (scripts/test runs under xvfb-run)")
def test_close_lets_go_of_the_tk_root_on_the_closing_thread(make_speaker: Callable[..., Speaker]) -> None:
    """A Speaker is garbage in reference cycles after close(): were it still holding the
    handlers, the Tk root behind them would be freed by a later GC pass on any thread,
    and Tcl aborts the process when its interpreter is deleted off its own thread."""
    import tkinter

    root = tkinter.Tk()
    delivery = TkDelivery(root)

    def on_end(event: EndEvent, quit: Callable[[], None] = root.quit) -> None:
        quit()

    speaker = make_speaker(output=MemoryOutput(), on_word=delivery.wrap(lambda event: None),
                           on_end=delivery.wrap(on_end))
    speaker.say(TEXT)
    root.after(10000, root.quit)
    root.mainloop()
    delivery.close()
    root.destroy()
    gone = weakref.ref(root)
    del root, delivery, on_end
    gc.disable()  # freed by close() itself, not by a collection
    try:
        speaker.close()
        assert gone() is None, "the closed Speaker still holds the Tk root through its handlers"
    finally:
        gc.enable()


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


def test_word_finder_places_words_despite_case_punctuation_and_misses() -> None:
    finder = WordFinder("Hello, world! It costs $100, today.")
    assert [finder.find(word) for word in ("hello", "WORLD", "It", "costs")] == [(0, 6), (7, 13), (14, 16), (17, 22)]
    assert finder.find("one") is None and finder.find("hundred") is None  # "$100" read out: skipped
    assert finder.find("today") == (29, 35)
    assert finder.find("hello") is None  # never backwards


def test_word_finder_counts_positions_as_python_or_as_qt_does() -> None:
    assert WordFinder("I \U0001F600 tea").find("tea") == (4, 7)  # Python (and Tk) count the emoji once
    assert WordFinder("I \U0001F600 tea", utf16=True).find("tea") == (5, 8)  # QTextCursor: UTF-16 units

