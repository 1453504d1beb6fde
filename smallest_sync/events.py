"""Events a Speaker reports: plain values handed to callbacks and to ``Speaker.events``.

Callbacks run one at a time on the ``smallest-events`` thread (see
:mod:`smallest_sync.session.announce`), never on the reader or audio threads and
with no library lock held: they may call any method of the Speaker.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union

from ._types import Record

if TYPE_CHECKING:
    from .utterance import Utterance

__all__ = ["StartEvent", "EndEvent", "ErrorEvent", "WordEvent", "AudioEvent", "DeviceEvent", "Event"]


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


class DeviceEvent(Record):
    """The sound card was lost (``state == "lost"``, with the ``error``), or is back
    (``"back"``): the output is reopened by itself when there is audio to play."""

    __slots__ = ("state", "error")
    state: str
    error: Optional[BaseException]

    def __init__(self, state: str, error: Optional[BaseException] = None) -> None:
        super().__init__(state, error)


#: What ``Speaker.events`` carries.
Event = Union[StartEvent, EndEvent, ErrorEvent, WordEvent, DeviceEvent]
