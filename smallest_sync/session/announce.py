"""How the app hears of events: callbacks on the ``smallest-events`` thread, and
the ``Speaker.events`` queue.

User code never runs on the reader thread or the player's threads: those hand
events to the :class:`Announcer`, whose :class:`Dispatcher` calls the callbacks
one at a time on its own thread, with no library lock held (so a callback may call
any method of the Speaker). A slow or failing callback cannot stutter audio; its
exception is logged with traceback and reported to ``on_error``.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Dict, Optional, Tuple

from ..events import AudioEvent, DeviceEvent, EndEvent, ErrorEvent, Event, StartEvent, WordEvent

logger = logging.getLogger(__name__)

__all__ = ["Announcer", "Dispatcher", "Callback"]

_JOIN_TIMEOUT = 5.0
EVENTS_KEPT = 256  # Speaker.events keeps the latest this many when nobody reads it
Callback = Optional[Callable[[Any], object]]

_Call = Tuple[Callable[[Any], object], Any]
_STOP = object()


class Dispatcher:
    """Runs callbacks in order on one named thread.

    ``on_error`` receives an :class:`ErrorEvent` for every callback that raised
    (except when ``on_error`` itself raised: that is only logged).
    """

    def __init__(self, on_error: Optional[Callable[[ErrorEvent], object]] = None) -> None:
        self._on_error = on_error
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        # Daemon: a callback that never returns must not keep the program alive.
        # Started by the owner once everything is built; close() joins it.
        self.thread = threading.Thread(target=self._run, name="smallest-events", daemon=True)

    def emit(self, callback: Optional[Callable[[Any], object]], event: Any) -> None:
        """Queue ``callback(event)``; a None callback is skipped. Never blocks."""
        if callback is not None:
            self._queue.put((callback, event))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            callback, event = item
            try:
                callback(event)
            except (Exception, SystemExit) as exc:  # sys.exit() in a callback must not kill the thread
                logger.exception("callback %r raised", callback)
                if callback is not self._on_error and self._on_error is not None:
                    self._queue.put((self._on_error, ErrorEvent(exc, getattr(event, "utterance", None))))

    @property
    def on_thread(self) -> bool:
        """True when called from a callback."""
        return threading.current_thread() is self.thread

    def close(self) -> None:
        """Run what is queued, then stop the thread (joined unless called from a callback)."""
        self._queue.put(_STOP)
        if self.thread.ident is not None and not self.on_thread:
            self.thread.join(_JOIN_TIMEOUT)
            if self.thread.is_alive():
                logger.error("a callback is still running after %.1f s; leaving its thread", _JOIN_TIMEOUT)
            else:
                self._on_error = None  # the caller's: not kept past close()


class Announcer:
    """Hands each event to its callback (on the dispatcher's thread) and to :attr:`events`.

    Never blocks and never runs user code on the calling thread, so it may be
    called with any lock held.
    """

    def __init__(self, *, on_word: Callback = None, on_start: Callback = None, on_end: Callback = None,
                 on_error: Callback = None, on_audio: Callback = None, on_device: Callback = None) -> None:
        #: Every Start/Word/End/Error/Device event, for programs that poll (GUI loops).
        self.events: "queue.Queue[Event]" = queue.Queue(maxsize=EVENTS_KEPT)
        self._callbacks: Dict[type, Callback] = {
            WordEvent: on_word, StartEvent: on_start, EndEvent: on_end, ErrorEvent: on_error, AudioEvent: on_audio,
            DeviceEvent: on_device}
        self.dispatcher = Dispatcher(on_error)

    @property
    def wants_audio(self) -> bool:
        """Someone takes AudioEvents (so they are worth making)."""
        return self._callbacks[AudioEvent] is not None

    def announce(self, event: Any) -> None:
        """Report ``event``: to its callback, and (all but AudioEvents) to :attr:`events`."""
        self.dispatcher.emit(self._callbacks[type(event)], event)
        if isinstance(event, AudioEvent):
            return
        try:
            self.events.put_nowait(event)
        except queue.Full:  # nobody reads it: keep the newest
            try:
                self.events.get_nowait()
                self.events.put_nowait(event)
            except (queue.Empty, queue.Full):
                pass

    def close(self) -> None:
        """Run the callbacks queued, stop the thread, and let go of the callbacks.

        Letting go here, on the closing thread, matters: a callback may hold a Tk
        root, and a Tk interpreter freed by a garbage-collection pass on another
        thread aborts the process ("Tcl_AsyncDelete: async handler deleted by the
        wrong thread").
        """
        self.dispatcher.close()
        self._callbacks = dict.fromkeys(self._callbacks)
