"""What the emulator saw and did, for tests to inspect.

The server's event-loop thread writes these records; any thread may read them.
One :class:`threading.Condition` (:attr:`Recorder.condition`) guards every list
and counter here and is notified on each change, so tests can block on
``Emulator.wait_for`` instead of polling.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__all__ = ["Handshake", "Received", "Recorder", "ServedRequest"]


@dataclass(frozen=True)
class Handshake:
    """One HTTP request on the server's port (WebSocket upgrade or plain GET).

    ``headers`` keeps every header verbatim (lower-case names) so tests can
    check what a client sent; the repr masks ``authorization``.
    """

    connection_id: int
    path: str
    query: Dict[str, str]
    headers: Dict[str, str]
    accepted: bool
    status: int

    def __repr__(self) -> str:
        shown = {k: ("<redacted>" if k == "authorization" else v) for k, v in self.headers.items()}
        return (f"Handshake(connection_id={self.connection_id}, path={self.path!r}, "
                f"query={self.query!r}, headers={shown!r}, accepted={self.accepted}, "
                f"status={self.status})")


@dataclass(frozen=True)
class Received:
    """One client WebSocket message; ``message`` is ``None`` unless it was a JSON object."""

    connection_id: int
    time: float
    raw: Union[str, bytes]
    message: Optional[Dict[str, Any]]


@dataclass(eq=False)
class ServedRequest:
    """One accepted synthesis request. Mutable fields change as it is served.

    Attributes:
        pcm: the full audio the engine produced (whatever was actually sent).
        words: ``(word, start, end)`` seconds on the request's own timeline.
        sent_samples: whole samples of ``pcm`` sent so far.
        completed: a ``complete`` frame was sent for this request.
        fault: the injected fault that hit this request, if any.
        cancelled: stopped by ``cancel_request``.
    """

    connection_id: int
    request_id: str
    session_id: str
    external_request_id: Optional[str]
    external_session_id: Optional[str]
    context_id: Optional[str]
    request: Dict[str, Any]
    text: str
    sample_rate: int
    output_format: str
    pcm: npt.NDArray[np.int16] = field(repr=False)
    words: List[Tuple[str, float, float]] = field(repr=False)
    sent_samples: int = 0
    completed: bool = False
    fault: Optional[str] = None
    cancelled: bool = False


class Recorder:
    """Thread-safe store of records plus the condition that announces changes."""

    def __init__(self) -> None:
        #: Guards every attribute below; notified on every change. Re-entrant
        #: so ``wait_for`` predicates may read the emulator's properties.
        self.condition = threading.Condition(threading.RLock())
        self.handshakes: List[Handshake] = []
        self.received: List[Received] = []
        self.served: List[ServedRequest] = []
        self.connections_opened = 0
        self.connections_active = 0
        self._next_connection_id = 1

    @contextmanager
    def change(self) -> Iterator[None]:
        """Hold the lock for a change, then notify all waiters."""
        with self.condition:
            yield
            self.condition.notify_all()

    def new_connection_id(self) -> int:
        with self.condition:
            cid = self._next_connection_id
            self._next_connection_id += 1
            return cid

    def clear(self) -> None:
        with self.change():
            self.handshakes.clear()
            self.received.clear()
            self.served.clear()
