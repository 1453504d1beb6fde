"""Cut text into pieces for the streaming TTS service: whole sentences, each short.

The service advises at most 250 characters per message (about 140 is best), and
it speaks best when each message is a whole sentence. An LLM produces text as a
stream of small tokens, so :class:`SentenceAggregator` collects tokens and hands
back each sentence as soon as it is complete; :func:`split_text` does the same
for a whole text at once::

    agg = SentenceAggregator(max_chars=250, first_fragment_min_chars=30)
    for token in tokens:
        for piece in agg.feed(token):   # often empty
            send(piece)
    for piece in agg.flush():           # end of the stream
        send(piece)

    split_text(text, max_chars=250)     # == feed(text) + flush(), without the early first fragment

Rules, and why
==============

Sentence ends
    A sentence ends after a run of ``.`` ``!`` ``?`` ``…`` (so ``?!``, ``...``,
    ``!!`` are one end), together with any closing quotes or brackets right
    after the run (``."`` ``?)`` ``!'`` ``.”`` ``」``): the closer belongs to the
    sentence it closes. The Arabic ``؟`` and ``۔`` count as the same kind of
    mark (an addition: RTL text otherwise never ends a sentence).

    These Latin-style marks end a sentence only when the *next* character is
    whitespace (or the stream ends). A period followed by anything else is
    part of a number or a name -- ``3.14``, ``1,000.50``, ``v2.0``,
    ``example.com``, ``a.b@c.io``, ``file.txt`` -- so while a candidate end is
    the last thing in the buffer it is held back until the next token shows
    what follows (``"3."`` then ``"14"`` is one sentence). Waiting costs one
    token of latency; guessing would break numbers.

    The CJK/fullwidth ``。！？`` and the Indic danda ``।`` and double danda
    ``॥`` end a sentence without whitespace after them (those scripts put no
    space there). They still wait for one more character to see whether
    closing quotes/brackets follow (``「好。」`` keeps its ``」``); that is the
    same one-token wait as above and keeps the result independent of how the
    text was cut into tokens. A stream that ends right after them releases at
    :meth:`SentenceAggregator.flush`.

    Known and accepted: ``"Why?" she asked.`` is two pieces; telling that
    ``she`` continues the sentence would mean waiting past the whitespace.

Not sentence ends (a bare ``.`` followed by whitespace)
    * an abbreviation from the small explicit, case-insensitive list
      :data:`ABBREVIATIONS` (``Mr.`` ``e.g.`` ``U.S.`` ``etc.`` ...), and any
      dotted run of single letters (``U.S.A.``, ``i.e.``, ``a.m.``);
    * a single capital letter, an initial (``J. R. R. Tolkien``);
    * a number of at most three digits that is the whole sentence so far: the
      numbering of a list item (``1. Preheat the oven.`` stays one piece).

    A sentence that really ends with one of these (``... in the U.S. Then``) is
    joined to the next one: a longer message, never a broken one. Closers turn
    the exceptions off (``He said "Mr." Then`` ends after the quote), so do
    ``!``/``?``/``...`` runs.

Paragraph breaks
    A run of whitespace holding two or more line feeds (a blank line, also
    ``\\r\\n\\r\\n``) or a U+2029 PARAGRAPH SEPARATOR ends a sentence even
    without punctuation: headings and list items have none. A single line
    break is kept inside the piece. (A lone ``\\r`` is not counted as a line
    break.)

Clause boundaries
    ``,`` ``;`` ``:`` ``—`` (and the Arabic ``،`` ``؛``), with any closers after
    them, when whitespace follows; a hyphen or en dash with a space on each
    side (``word - word``; a dash after a line break is a list bullet, not a
    boundary); and the CJK ``、，；：``, which need no whitespace after them.
    ``1,000`` and ``10:30`` are never boundaries.

Early first fragment
    Speech should start fast, so before the first piece of a stream is
    released, the text up to and including the first clause boundary that has
    at least ``first_fragment_min_chars`` characters before it (counted from
    the start of the piece) is released on its own. Only the very first piece
    of a stream; after that, whole sentences only. ``first_fragment_min_chars=0``
    allows any clause boundary; ``None`` disables the rule (that is what
    :func:`split_text` does). At :meth:`~SentenceAggregator.flush` there is no
    latency to save, so a fragment still waiting for its next character is
    simply part of the rest.

Length
    A sentence longer than ``max_chars`` is cut, greedily from its start, at
    the last clause boundary that leaves at most ``max_chars`` characters,
    else at the last whitespace, else (scripts written without spaces, long
    URLs) hard at ``max_chars`` characters. A hard cut is only ever made
    between two characters, and moved back so as not to split a combining
    mark (any Unicode category ``M*``, which includes the Indic vowel signs),
    an Indic conjunct (nothing after a virama), a zero-width joiner sequence,
    a variation selector or emoji modifier, a regional-indicator flag pair or
    a surrogate pair from its base; only a run made entirely of such
    characters is cut at ``max_chars`` regardless. Streaming cuts as soon as
    the limit is reached, so a sentence with no end is not held back.

Whitespace
    Pieces are stripped of surrounding whitespace; whitespace-only pieces are
    never returned; inner whitespace, newlines included, is kept verbatim.
    A run of whitespace longer than a piece can hold can never appear inside a
    piece, so the aggregator shortens one that grows past ``2 * (max_chars + 1)``
    back to ``max_chars + 1`` characters (this bounds its memory on a flood of
    whitespace; the pieces are unaffected).

Streams
    Results do not depend on how the text is cut into tokens: feeding it one
    character at a time, in random chunks or all at once gives the same
    pieces. :meth:`~SentenceAggregator.flush` ends the stream and releases the
    rest; a :meth:`~SentenceAggregator.feed` after it starts a new stream, to
    which the first-fragment rule applies again.

    Work is incremental: the buffer holds only the unreleased text (at most
    about ``3 * max_chars`` characters plus the newest token) and scan
    positions, so each character is examined a bounded number of times
    whatever the length of the stream: 200,000 one-character tokens take
    about 0.15 s.

Pure Python, no I/O, no threads; an aggregator is not thread-safe (one per stream).
"""
from __future__ import annotations

import re
from typing import Optional

__all__ = ["ABBREVIATIONS", "MAX_CHARS", "SentenceAggregator", "split_text"]

MAX_CHARS = 250
"""The service's advised upper limit on the characters of one message."""

ABBREVIATIONS = (
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "cf", "al",
    "e.g", "i.e", "a.m", "p.m", "u.s", "u.k", "ph.d",
    "inc", "ltd", "co", "corp", "no", "fig", "approx", "dept", "vol",
)
"""Words that a following ``.`` does not end a sentence after (compared lower-case)."""

_ABBREVIATIONS = frozenset(ABBREVIATIONS)
_LONGEST_WORD = max(len(word) for word in ABBREVIATIONS) + 2  # room for dotted initials

# Marks ending a sentence when whitespace follows, and those that end it anyway.
_LATIN_ENDS = ".!?…؟۔"
_SCRIPT_ENDS = "。！？।॥"
_CLOSERS = "\"'”’»›)\\]}」』）】〉》〕］｝〗〙〛｣＂＇"
_LATIN_CLAUSE = ",;:—،؛"
_DASHES = "-–"
_CJK_CLAUSE = "、，；："
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"

# Sets of marks are searched with str methods, not regex classes: a class holding
# characters past Latin-1 is slow to compile, and would be compiled at every import.
_ENDS = _LATIN_ENDS + _SCRIPT_ENDS
_SENTENCE_TRIGGERS = _ENDS + "\n\u2029"
_CLAUSE_MARKS = _LATIN_CLAUSE + _DASHES + _CJK_CLAUSE
_ANY_TRIGGER = frozenset(_SENTENCE_TRIGGERS + _CLAUSE_MARKS)
_ASCII_PART = {chars: "".join(char for char in chars if char.isascii())
               for chars in (_SENTENCE_TRIGGERS, _CLAUSE_MARKS)}
_SPACES = re.compile(r"\s*")
_NON_SPACE = re.compile(r"\S")
_UP_TO_LAST_SPACE = re.compile(r".*\s", re.DOTALL)
_DOTTED_INITIALS = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")

_NO = -1  # a candidate that is not a boundary
_WAIT = -2  # a candidate that needs characters not yet received


def _present(text: str, chars: str) -> str:
    """Those of ``chars`` that may occur in ``text``: searches of ``text`` need look for no other."""
    if text.isascii():  # O(1): a flag of the string
        return _ASCII_PART[chars]
    return "".join(char for char in chars if char in text)


def _find_any(text: str, chars: str, pos: int, end: int) -> int:
    """The index of the first of ``chars`` in ``text[pos:end]``, or -1."""
    found = -1
    for char in chars:
        i = text.find(char, pos, end)
        if i >= 0:
            found = end = i  # the next characters need only be looked for before it
    return found


def _run_end(text: str, i: int, n: int, chars: str) -> int:
    """The end of the run of ``chars`` starting at ``text[i]`` (``i`` if there is none), within ``text[:n]``."""
    while i < n and text[i] in chars:
        i += 1
    return i


def _clause_end(text: str, i: int, n: int, lo: int) -> int:
    """Where the clause boundary whose mark is ``text[i]`` ends (exclusive).

    Looks only at ``text[lo:n]``. Returns ``_NO`` when the mark is not a
    boundary and ``_WAIT`` when ``text[n:]`` would be needed to tell.
    """
    mark = text[i]
    if mark in _DASHES:  # "word - word" only
        before = text[i - 1] if i - 1 >= lo else ""
        if not before.isspace() or before in _LINE_BREAKS or i - 2 < lo or text[i - 2].isspace():
            return _NO
        if i + 1 >= n:
            return _WAIT
        return i + 1 if text[i + 1].isspace() else _NO
    end = _run_end(text, i + 1, n, _CLOSERS)
    if end >= n:
        return _WAIT
    if mark in _CJK_CLAUSE or text[end].isspace():
        return end
    return _NO


def _is_regional_indicator(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _can_split(text: str, i: int) -> bool:
    """Whether ``text`` may be cut between ``text[i - 1]`` and ``text[i]``."""
    import unicodedata  # here: only a piece with no space or mark to cut at needs it

    before, after = text[i - 1], text[i]
    if before == "\u200d" or after == "\u200d":  # zero-width joiner sequences
        return False
    if unicodedata.category(after).startswith("M"):  # combining marks, vowel signs, variation selectors
        return False
    if unicodedata.combining(before) == 9:  # a virama joins the next consonant into a conjunct
        return False
    if "\U0001f3fb" <= after <= "\U0001f3ff" or "\U000e0020" <= after <= "\U000e007f":  # skin tones, tags
        return False
    if "\ud800" <= before <= "\udbff" and "\udc00" <= after <= "\udfff":  # a surrogate pair
        return False
    if _is_regional_indicator(before) and _is_regional_indicator(after):
        run = 0
        while i - 1 - run >= 0 and _is_regional_indicator(text[i - 1 - run]):
            run += 1
        return run % 2 == 0  # only between two flags
    return True


def _length_cut(text: str, start: int, max_chars: int) -> int:
    """Where to end a piece that starts at ``text[start]`` and is too long.

    ``text`` holds at least ``max_chars + 1`` characters from ``start``, and
    ``text[start]`` is not whitespace. The piece is ``text[start:cut]``.
    """
    window = text[start:start + max_chars + 1]
    size = len(window)
    best = 0
    for i, char in enumerate(window):
        if char in _CLAUSE_MARKS:
            end = _clause_end(window, i, size, 0)
            if 0 < end <= max_chars:
                best = end
    if best:
        return start + best
    spaced = _UP_TO_LAST_SPACE.match(window)
    if spaced is not None:  # the last whitespace is at index >= 1: window[0] is not one
        return start + spaced.end() - 1
    cut = max_chars
    while cut > 0 and not _can_split(window, cut):
        cut -= 1
    return start + (cut or max_chars)


class SentenceAggregator:
    """Collects streamed text tokens and releases them as whole sentences.

    ``max_chars``: no piece is longer than this (default :data:`MAX_CHARS`).
    ``first_fragment_min_chars``: release the first clause of a stream early
    once at least this many characters precede its boundary; ``None`` never
    does. See the module documentation for the rules.

    Not thread-safe: one aggregator per stream, used from one thread.
    """

    def __init__(self, *, max_chars: int = MAX_CHARS, first_fragment_min_chars: Optional[int] = 30) -> None:
        if isinstance(max_chars, bool) or not isinstance(max_chars, int):
            raise TypeError(f"max_chars must be an int, not {type(max_chars).__name__}")
        if max_chars < 1:
            raise ValueError(f"max_chars must be at least 1, not {max_chars}")
        if first_fragment_min_chars is not None:
            if isinstance(first_fragment_min_chars, bool) or not isinstance(first_fragment_min_chars, int):
                raise TypeError(
                    f"first_fragment_min_chars must be an int or None, not {type(first_fragment_min_chars).__name__}"
                )
            if first_fragment_min_chars < 0:
                raise ValueError(f"first_fragment_min_chars must be >= 0 or None, not {first_fragment_min_chars}")
        self.max_chars = max_chars
        self.first_fragment_min_chars = first_fragment_min_chars
        self._reset()

    def _reset(self) -> None:
        self._buf = ""  # unreleased text; starts with a non-whitespace character unless empty
        self._scan = 0  # sentence ends are decided for every position before this
        self._clause_scan = 0  # likewise clause boundaries, while the first fragment is possible
        self._released = False  # a piece of this stream has been released

    def feed(self, token: str) -> list[str]:
        """Add ``token`` to the stream; returns the pieces now ready to send (often none)."""
        if not isinstance(token, str):
            raise TypeError(f"token must be a str, not {type(token).__name__}")
        if not token:
            return []
        old = len(self._buf)
        self._buf += token
        new = len(self._buf)
        # Fast path: nothing in the token that could end a sentence or a
        # clause, no decision pending (or only a paragraph break, which more
        # spaces cannot decide), and the piece cannot have grown too long.
        if (
            old
            and (self._scan == old or (self._buf[self._scan] == "\n" and token.isspace()))
            and (self._clause_scan == old or self._released or self.first_fragment_min_chars is None)
            and (new <= self.max_chars or token.isspace())
            and _ANY_TRIGGER.isdisjoint(token)
        ):
            if self._scan == old:
                self._scan = new
            self._clause_scan = new
            if new > 3 * (self.max_chars + 1):
                self._cap_spaces()
            return []
        return self._process(final=False)

    def flush(self) -> list[str]:
        """End the stream: the pieces left, stripped (none if only whitespace remains).

        The aggregator is then ready for a new stream.
        """
        pieces = self._process(final=True)
        self._reset()
        return pieces

    def _process(self, final: bool) -> list[str]:
        buf = self._buf
        n = len(buf)
        limit = self.max_chars
        start = 0
        if buf and buf[0].isspace():  # only when the buffer was empty before this token
            start = self._skip_spaces(buf, 0)
            self._scan = self._clause_scan = start
        fragments = not final and not self._released and self.first_fragment_min_chars is not None
        triggers, marks = _present(buf, _SENTENCE_TRIGGERS), _present(buf, _CLAUSE_MARKS)
        pieces: list[str] = []
        while start < n:
            # The first non-space character that no piece starting at `start` can hold.
            over = -1
            if start + limit < n:
                found = _NON_SPACE.search(buf, start + limit)
                if found is not None:
                    over = found.start()
            horizon = over if over >= 0 else n
            stop = self._sentence_end(buf, start, horizon, final, triggers)
            if fragments:
                fragment = self._fragment_end(buf, start, stop if stop >= 0 else horizon, marks)
                if fragment >= 0:
                    stop = fragment
            if over >= 0 and (stop < 0 or stop > over):
                stop = _length_cut(buf, start, limit)
            elif stop < 0:
                break
            piece = buf[start:stop].rstrip()
            if piece:
                pieces.append(piece)
            self._released = True
            fragments = False
            start = self._skip_spaces(buf, stop)
            self._scan = self._clause_scan = start
        if final:
            rest = buf[start:].rstrip()
            if rest:
                pieces.append(rest)
            return pieces
        self._keep(buf, start)
        return pieces

    @staticmethod
    def _skip_spaces(buf: str, pos: int) -> int:
        found = _NON_SPACE.search(buf, pos)
        return found.start() if found is not None else len(buf)

    def _keep(self, buf: str, start: int) -> None:
        """Keep ``buf[start:]`` as the buffer."""
        if start:
            buf = buf[start:]
            self._scan -= start
            self._clause_scan -= start
        self._buf = buf
        if len(buf) > 3 * (self.max_chars + 1):
            self._cap_spaces()

    def _cap_spaces(self) -> None:
        """Shorten a long run of whitespace at the end of the buffer to ``max_chars + 1`` characters.

        Such a run can never be inside a piece (a piece holding it would be too
        long), so only its being whitespace, and whether it holds a line feed
        (a paragraph break waits for a second one), can still matter. Called
        only when the buffer's text cannot fill a piece, so it bounds the
        buffer on a flood of whitespace.
        """
        buf = self._buf
        if not buf[-1].isspace():
            return
        content = len(buf.rstrip())
        if len(buf) - content <= 2 * (self.max_chars + 1):
            return
        kept = buf[content:content + self.max_chars + 1]
        if "\n" not in kept and "\n" in buf[content:]:
            kept = kept[:-1] + "\n"
        self._buf = buf[:content] + kept
        self._scan = min(self._scan, content)
        self._clause_scan = min(self._clause_scan, content)

    def _sentence_end(self, buf: str, start: int, horizon: int, final: bool, triggers: str) -> int:
        """The end (exclusive) of the sentence starting at ``buf[start]``, or -1 if not known yet.

        Looks for ends whose first character is before ``horizon``; resumes at ``self._scan``.
        """
        n = len(buf)
        pos = max(self._scan, start)
        while True:
            i = _find_any(buf, triggers, pos, horizon)
            if i < 0:
                self._scan = max(pos, horizon)
                return -1
            if buf[i] in "\n\u2029":
                spaces = _SPACES.match(buf, i)
                assert spaces is not None
                j = spaces.end()
                if buf.count("\n", i, j) >= 2 or buf.find("\u2029", i, j) >= 0:
                    return i
                if j >= n:
                    if final:
                        return i
                    self._scan = i
                    return -1
                pos = j
                continue
            j = _run_end(buf, i, n, _ENDS)
            k = _run_end(buf, j, n, _CLOSERS)
            if k >= n and not final:
                self._scan = i
                return -1
            if any(mark in _SCRIPT_ENDS for mark in buf[i:j]):
                return k
            if k < n and not buf[k].isspace():
                pos = k
                continue
            if k == i + 1 and buf[i] == "." and self._not_an_end(buf, start, i):
                pos = k
                continue
            return k

    @staticmethod
    def _not_an_end(buf: str, start: int, i: int) -> bool:
        """Whether the ``.`` at ``buf[i]``, followed by whitespace, is an abbreviation's or the like."""
        if i - start <= 3 and buf[start:i].isdecimal():  # "1. " numbering a list item
            return True
        word = i
        while word > start and i - word <= _LONGEST_WORD and (buf[word - 1].isalpha() or buf[word - 1] == "."):
            word -= 1
        if word == i or (word > start and (buf[word - 1].isalnum() or buf[word - 1] == ".")):
            return False  # no word, or one too long or joined to digits
        text = buf[word:i]
        if len(text) == 1:
            return text.isupper()  # an initial
        return text.lower() in _ABBREVIATIONS or _DOTTED_INITIALS.fullmatch(text) is not None

    def _fragment_end(self, buf: str, start: int, horizon: int, marks: str) -> int:
        """The end of the first qualifying clause boundary before ``horizon``, or -1."""
        assert self.first_fragment_min_chars is not None
        n = len(buf)
        pos = max(self._clause_scan, start + self.first_fragment_min_chars)
        while True:
            i = _find_any(buf, marks, pos, horizon)
            if i < 0:
                self._clause_scan = max(pos, horizon)
                return -1
            end = _clause_end(buf, i, n, start)
            if end == _WAIT:
                self._clause_scan = i
                return -1
            if end >= 0:
                return end
            pos = i + 1


def split_text(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """``text`` as pieces to send: sentences, each at most ``max_chars`` characters.

    Exactly what streaming ``text`` through a :class:`SentenceAggregator` and
    flushing gives, without the early first fragment.
    """
    aggregator = SentenceAggregator(max_chars=max_chars, first_fragment_min_chars=None)
    return aggregator.feed(text) + aggregator.flush()
