"""What ``smallest-say`` shows while it speaks: captions on stdout, progress on stderr.

Both are fed by the Speaker's callbacks, which run one at a time on the
``smallest-events`` thread, in the order things are heard: an utterance's start,
its words, its end. The main thread only redraws the live progress line now and
then (:meth:`Progress.tick`), under the progress line's lock.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import IO, Iterable, List, Optional, Sequence

from ..events import WordEvent
from ..utterance import Utterance
from ..voices import VoiceInfo

logger = logging.getLogger(__name__)

__all__ = ["Captions", "Progress", "discard_closed_stream", "same_terminal", "voice_table"]

_CLEAR_LINE = "\r\x1b[K"


class Captions:
    """Each word as it is heard, space separated; a line per utterance.

    Voices that send no word timings get the utterance's whole text when it has
    been heard, so captions never stay silent.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._line_open = False  # words of the current utterance have been written
        self._broken = False

    def word(self, event: WordEvent) -> None:
        """Events thread: ``event.word`` is being heard."""
        self._write(f" {event.word}" if self._line_open else event.word)
        self._line_open = True

    def ended(self, utterance: Utterance) -> None:
        """Events thread: ``utterance`` is over."""
        if self._line_open:
            self._write("\n")
        elif utterance.state == "done":
            self._write(utterance.text + "\n")
        self._line_open = False

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except BrokenPipeError:
            # The reader went away (`| head -1`): keep speaking, stop captioning.
            self._broken = True
            logger.info("captions: stdout was closed; no more captions")
            discard_closed_stream(self._stream)


class Progress:
    """``sentence 3/40, 0:12 heard`` on stderr.

    ``live``: one line redrawn in place (a terminal); otherwise a line per
    utterance as it starts to be heard (a log file, or a terminal shared with
    captions). ``unit`` names a piece; ``total`` is None when not known up front.
    """

    def __init__(self, stream: IO[str], *, live: bool, unit: str, total: Optional[int]) -> None:
        self._stream = stream
        self._live = live
        self._unit = unit
        self._total = total
        # Guards the counters and the stream: the events thread updates, the main thread redraws.
        self._lock = threading.Lock()
        self._started = 0
        self._current: Optional[Utterance] = None
        self._heard_before = 0.0  # seconds heard of the utterances that are over
        self._drawn = False

    def started(self, utterance: Utterance) -> None:
        """Events thread: ``utterance`` is starting to be heard."""
        with self._lock:
            self._started += 1
            self._current = utterance
            self._draw()

    def ended(self, utterance: Utterance) -> None:
        """Events thread: ``utterance`` is over."""
        with self._lock:
            self._heard_before += utterance.duration
            if utterance is self._current:
                self._current = None

    def tick(self) -> None:
        """Main thread, now and then: bring the heard time up to date (live line only)."""
        if self._live:
            with self._lock:
                self._draw()

    def finish(self) -> None:
        """Main thread, at the end: take the live line away."""
        # With a timeout: a Ctrl-C can land in the main thread's own tick() at any point.
        if not self._lock.acquire(timeout=1.0):
            return
        try:
            if self._live and self._drawn:
                self._stream.write(_CLEAR_LINE)
                self._stream.flush()
            self._drawn = False
        finally:
            self._lock.release()

    def _draw(self) -> None:
        """Lock held."""
        if not self._started:
            return
        heard = self._heard_before + (self._current.duration if self._current is not None else 0.0)
        count = f"{self._started}/{self._total}" if self._total is not None else str(self._started)
        line = f"{self._unit} {count}, {_clock(heard)} heard"
        self._stream.write(_CLEAR_LINE + line if self._live else line + "\n")
        self._stream.flush()
        self._drawn = True


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def discard_closed_stream(stream: IO[str]) -> None:
    """Point a stream whose reader has gone at /dev/null, so that the interpreter's
    flush at exit does not fail with a second BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def same_terminal(a: IO[str], b: IO[str]) -> bool:
    """Whether two streams write to one terminal (so their lines would interleave)."""
    try:
        return a.isatty() and b.isatty() and os.ttyname(a.fileno()) == os.ttyname(b.fileno())
    except (OSError, ValueError):
        return False


def voice_table(voices: Sequence[VoiceInfo], default: Optional[str] = None) -> List[str]:
    """The catalogue as aligned text lines; ``*`` marks the model's default voice."""
    header = ("  ID", "NAME", "GENDER", "ACCENT", "AGE", "LANGUAGES")
    rows = [header] + [
        (("* " if voice.id == default else "  ") + voice.id, voice.name, voice.gender or "-",
         voice.accent or "-", voice.age or "-", ", ".join(voice.languages) or "-")
        for voice in voices
    ]
    return [_align(row, rows) for row in rows]


def _align(row: Iterable[str], rows: Sequence[Sequence[str]]) -> str:
    cells = list(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(cells) - 1)]
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths + [0])).rstrip()
