"""Events a Speaker reports, and the thread that runs user callbacks.

User code never runs on the reader thread or the player's threads: those hand
events to :class:`Dispatcher`, whose ``smallest-events``
thread calls the callbacks one at a time, outside every library lock. A slow or
failing callback therefore cannot stutter audio; its exception is logged with
traceback and reported to ``on_error``.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple, Union

from ._types import Record

if TYPE_CHECKING:
    from .utterance import Utterance

logger = logging.getLogger(__name__)

__all__ = ["StartEvent", "EndEvent", "ErrorEvent", "WordEvent", "AudioEvent", "Event", "Dispatcher"]

_JOIN_TIMEOUT = 5.0


class StartEvent(Record):
    """The first sample of ``utterance`` is being heard."""

    __slots__ = ("utterance",)
    utterance: "Utterance"

    def __init__(self, utterance: "Utterance") -> None:
        super().__init__(utterance)


class EndEvent(Record):
    """``utterance`` is over: played to the end, interrupted, cancelled or failed."""

    __slots__ = ("utterance",)
    utterance: "Utterance"

    def __init__(self, utterance: "Utterance") -> None:
        super().__init__(utterance)


class ErrorEvent(Record):
    """Something failed; ``utterance`` is None for errors outside any utterance."""

    __slots__ = ("error", "utterance")
    error: BaseException
    utterance: Optional["Utterance"]

    def __init__(self, error: BaseException, utterance: Optional["Utterance"] = None) -> None:
        super().__init__(error, utterance)


class WordEvent(Record):
    """``word`` is being heard now.

    ``start``/``end`` are seconds on the utterance's own timeline (cumulative over
    the requests of a streamed turn); ``index`` counts the utterance's words from 0.
    """

    __slots__ = ("word", "start", "end", "utterance", "index")
    word: str
    start: float
    end: float
    utterance: "Utterance"
    index: int

    def __init__(self, word: str, start: float, end: float, utterance: "Utterance", index: int = 0) -> None:
        super().__init__(word, start, end, utterance, index)


class AudioEvent(Record):
    """Decoded samples of ``utterance`` as they arrived from the server (before playback)."""

    __slots__ = ("samples", "utterance")
    samples: Any  # np.ndarray of int16
    utterance: "Utterance"

    def __init__(self, samples: Any, utterance: "Utterance") -> None:
        super().__init__(samples, utterance)


#: What ``Speaker.events`` carries.
Event = Union[StartEvent, EndEvent, ErrorEvent, WordEvent]

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
        self._thread = threading.Thread(target=self._run, name="smallest-events", daemon=True)
        # Daemon: a callback that never returns must not keep the program alive.
        self._thread.start()

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
        return threading.current_thread() is self._thread

    def close(self) -> None:
        """Run what is queued, then stop the thread (joined unless called from a callback)."""
        self._queue.put(_STOP)
        if not self.on_thread:
            self._thread.join(_JOIN_TIMEOUT)
            if self._thread.is_alive():
                logger.error("a callback is still running after %.1f s; leaving its thread", _JOIN_TIMEOUT)
            else:
                self._on_error = None  # the caller's: not kept past close()
