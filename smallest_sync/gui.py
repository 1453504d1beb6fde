"""Deliver Speaker events on a GUI's main thread (Tk, Qt).

Speaker callbacks run on the library's ``smallest-events`` thread, where Tk and
Qt widgets must not be touched. Wrap your handlers so they run on the GUI thread:

Tk (the handler runs from Tk's own event loop, polled with ``after``)::

    delivery = TkDelivery(root)
    speaker = Speaker(on_word=delivery.wrap(lambda event: highlight(event.word)))

Qt (a queued signal; PySide6)::

    delivery = QtDelivery()          # create it on the GUI thread
    speaker = Speaker(on_word=delivery.wrap(lambda event: label.setText(event.word)))

Both keep the order of events, and an exception in a handler is logged (Tk) or
reported by Qt, never raised into the library.
"""
from __future__ import annotations

import itertools
import logging
import queue
import re
from typing import Any, Callable, List, Optional, Tuple

logger = logging.getLogger(__name__)

__all__ = ["TkDelivery", "QtDelivery", "WordFinder"]

Handler = Callable[[Any], object]


class WordFinder:
    """Maps the words the service reports to spans of the text, to highlight them.

    A reported word may differ from the text in case or punctuation ("hello" for
    "Hello,"), and some cannot be found at all (a number read out as words). So:
    compare letters and digits only, search forward from the last match, a few
    words at most, and skip a word that cannot be placed.

    ``utf16=True`` gives positions in UTF-16 code units, as Qt counts them (an
    emoji is two); otherwise Python string indexes, as Tk's ``"1.0 + N chars"`` takes.
    """

    LOOKAHEAD = 6

    def __init__(self, text: str, *, utf16: bool = False) -> None:
        if utf16:
            at: List[int] = list(itertools.accumulate((2 if ord(ch) > 0xFFFF else 1 for ch in text), initial=0))
        else:
            at = list(range(len(text) + 1))
        self._words = [(at[m.start()], at[m.end()], _letters(m.group())) for m in re.finditer(r"\S+", text)]
        self._next = 0

    def find(self, word: str) -> Optional[Tuple[int, int]]:
        """The (start, end) of ``word``'s next match in the text, or None."""
        key = _letters(word)
        for i in range(self._next, min(self._next + self.LOOKAHEAD, len(self._words))):
            start, end, letters = self._words[i]
            if key and letters == key:
                self._next = i + 1
                return start, end
        return None


def _letters(word: str) -> str:
    return "".join(ch for ch in word.casefold() if ch.isalnum())


class TkDelivery:
    """Runs wrapped handlers on the Tk main loop of ``widget``.

    The queue is drained every ``interval_ms`` milliseconds by a Tk ``after``
    callback (Tk's own timer, on its thread).
    Call :meth:`close` (or destroy the widget) to stop polling.
    """

    def __init__(self, widget: Any, *, interval_ms: int = 10) -> None:
        self._widget = widget
        self._interval = interval_ms
        self._queue: "queue.SimpleQueue[Tuple[Handler, Any]]" = queue.SimpleQueue()
        self._closed = False
        self._after: Optional[str] = widget.after(interval_ms, self._drain)

    def wrap(self, handler: Handler) -> Callable[[Any], None]:
        """A callback for Speaker that queues ``handler(event)`` for the Tk thread."""
        def deliver(event: Any) -> None:
            self._queue.put((handler, event))
        return deliver

    def _drain(self) -> None:
        while True:
            try:
                handler, event = self._queue.get_nowait()
            except queue.Empty:
                break
            try:
                handler(event)
            except Exception:  # a GUI handler must not stop the delivery loop
                logger.exception("Tk event handler %r raised", handler)
        if self._closed:  # a handler called close()
            self._after = None
            return
        try:
            self._after = self._widget.after(self._interval, self._drain)
        except Exception:  # the widget was destroyed
            self._after = None

    def close(self) -> None:
        """Stop polling (pending events are dropped). Safe from a handler."""
        self._closed = True
        if self._after is not None:
            try:
                self._widget.after_cancel(self._after)
            except Exception:
                pass
            self._after = None


def QtDelivery(parent: Any = None) -> Any:
    """A QObject whose ``wrap(handler)`` runs handlers on the thread it lives in.

    Create it on the GUI thread. Events cross threads as a queued Qt signal, the
    way Qt intends. Needs PySide6 (``pip install 'smallest-sync[qt]'``).
    """
    from PySide6.QtCore import QObject, Signal, Slot

    class _QtDelivery(QObject):
        delivered = Signal(object, object)

        def __init__(self, parent: Any = None) -> None:
            super().__init__(parent)
            self.delivered.connect(self._run)

        def wrap(self, handler: Handler) -> Callable[[Any], None]:
            def deliver(event: Any) -> None:
                self.delivered.emit(handler, event)
            return deliver

        @Slot(object, object)
        def _run(self, handler: Handler, event: Any) -> None:
            handler(event)

    return _QtDelivery(parent)
