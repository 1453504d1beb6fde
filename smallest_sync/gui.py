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

import logging
import queue
from typing import Any, Callable, Optional, Tuple

logger = logging.getLogger(__name__)

__all__ = ["TkDelivery", "QtDelivery"]

Handler = Callable[[Any], object]


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
