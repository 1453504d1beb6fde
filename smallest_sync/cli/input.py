"""Where ``smallest-say`` gets its text: the arguments, a file, or stdin line by line.

A source hands its pieces, in order, to a ``deliver`` function and then ``None``
for the end. Arguments and files are read whole and cut into sentences at once
(so the number of sentences is known for the progress line); stdin is read on a
thread of its own and each line is delivered as soon as it is complete, so the
first line is spoken while the program feeding the pipe is still writing.
"""
from __future__ import annotations

import codecs
import os
import stat
import sys
import threading
from typing import Callable, List, Optional, Sequence, Union

from ..errors import ConfigurationError, SmallestError
from ..text import split_text

__all__ = ["Item", "Source", "SentenceSource", "StdinLines", "choose_source", "read_file"]

#: What a source delivers: a piece of text, None at the end, or the error that ended it.
Item = Union[str, None, BaseException]
Deliver = Callable[[Item], None]

_READ_SIZE = 64 * 1024


class Source:
    """Pieces of text to speak, one utterance each."""

    #: what one piece is called in the progress line
    unit = "sentence"
    #: how many pieces in all, when known before speaking starts
    total: Optional[int] = None

    def start(self, deliver: Deliver) -> None:
        """Hand every piece to ``deliver``, then None. Called once, on the main thread."""
        raise NotImplementedError


class SentenceSource(Source):
    """A whole text, cut into sentences (at most 250 characters each) up front."""

    def __init__(self, text: str) -> None:
        # Whitespace inside a sentence is collapsed: a hard-wrapped file's line
        # breaks are layout, not pauses. Blank lines still end a sentence (split_text).
        self.pieces: List[str] = [" ".join(piece.split()) for piece in split_text(text)]
        self.total = len(self.pieces)

    def start(self, deliver: Deliver) -> None:
        for piece in self.pieces:
            deliver(piece)
        deliver(None)


def read_file(path: str) -> SentenceSource:
    """The text of ``path`` (UTF-8, a BOM allowed) as sentences.

    Raises ConfigurationError when it cannot be read: a bad argument, not a crash.
    """
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as file:
            return SentenceSource(file.read())
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from exc


def choose_source(text: Sequence[str], file: Optional[str]) -> Source:
    """The text to speak: ``-f FILE``; ``text`` (the arguments); or stdin, line by line,
    when ``text`` is ``["-"]``, or empty while text is piped or redirected in.

    Raises ConfigurationError for a mix of these, or nothing to say.
    """
    source: Source
    if file is not None:
        if text:
            raise ConfigurationError("give the text as arguments or with -f FILE, not both")
        source = read_file(file)
    elif list(text) == ["-"] or (not text and _stdin_is_input()):
        return StdinLines()
    elif "-" in text:
        raise ConfigurationError('"-" (read stdin) cannot be mixed with text arguments')
    else:
        source = SentenceSource(" ".join(text))
    if not source.total:
        raise ConfigurationError("nothing to say: give text as arguments, with -f FILE, or on stdin")
    return source


def _stdin_is_input() -> bool:
    """Text is being piped or redirected in. A terminal is not (that would wait for
    typing nobody expects), nor is /dev/null (what cron and scripts often give)."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


class StdinLines(Source):
    """Standard input, one utterance per non-blank line, delivered as each line ends.

    A daemon thread (``smallest-say-stdin``) does the reading: a read from a pipe
    cannot be interrupted, and the program must be able to exit (on an error or
    Ctrl-C) while the writer keeps the pipe open. It reads the file descriptor
    directly, not ``sys.stdin``, so it never holds the lock of a buffered stream
    that the interpreter wants at exit.
    """

    unit = "line"

    def __init__(self) -> None:
        self._fd = sys.stdin.fileno()
        self._encoding = getattr(sys.stdin, "encoding", None) or "utf-8"

    def start(self, deliver: Deliver) -> None:
        threading.Thread(target=self._read, args=(deliver,), name="smallest-say-stdin", daemon=True).start()

    def _read(self, deliver: Deliver) -> None:
        """The reader thread: split what arrives into lines and deliver each non-blank one."""
        decoder = codecs.getincrementaldecoder(self._encoding)(errors="replace")
        unfinished: List[str] = []  # the current line's text so far, in chunks (no quadratic joins)
        try:
            while True:
                data = os.read(self._fd, _READ_SIZE)
                *lines, rest = decoder.decode(data, final=not data).split("\n")
                if lines:
                    lines[0] = "".join(unfinished) + lines[0]
                    unfinished = []
                unfinished.append(rest)
                if not data:
                    lines.append("".join(unfinished))
                for line in lines:
                    if line.strip():
                        deliver(line.strip())
                if not data:
                    deliver(None)
                    return
        except OSError as exc:
            error = SmallestError(f"cannot read stdin: {exc.strerror or exc}")
            error.__cause__ = exc
            deliver(error)
