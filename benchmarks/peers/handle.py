"""One utterance of a peer, as the figures see it: first audio, samples, done."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from ..subjects import Handle


class StreamHandle(Handle):
    """Filled by the thread that receives the peer's audio; read by the benchmark.

    ``feed`` runs on the peer's delivery thread (the SDK's consumer thread,
    pipecat's event loop); ``wait`` on the benchmark's. ``first_audio_at`` is set
    just before the first block is handed to ``on_write``, as ours is set when
    its player takes the block it then writes.
    """

    def __init__(self, rate: int, on_write: Optional[Callable[[Any], None]] = None) -> None:
        self.rate = rate
        self._on_write = on_write
        self._first: Optional[float] = None
        self._samples = 0
        self._done = threading.Event()
        self.interrupted = False
        self._error: Optional[BaseException] = None

    def feed(self, pcm: Any) -> None:
        if not len(pcm):
            return
        if self._first is None:
            self._first = time.monotonic()
        self._samples += len(pcm)
        if self._on_write is not None:
            self._on_write(pcm)

    def finish(self, error: Optional[BaseException] = None, *, interrupted: bool = False) -> None:
        if self._done.is_set():
            return
        self._error = error
        self.interrupted = interrupted
        self._done.set()

    @property
    def error(self) -> Optional[BaseException]:
        return self._error

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._done.wait(timeout)

    @property
    def first_audio_at(self) -> Optional[float]:
        return self._first

    @property
    def taken(self) -> int:
        return self._samples

    @property
    def duration(self) -> float:
        return self._samples / self.rate
