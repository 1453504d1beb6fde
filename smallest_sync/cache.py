"""Phrase cache: phrases already spoken, kept on disk to replay instantly and offline.

The key (:meth:`PhraseCache.key`, SHA-256 of canonical JSON) covers what changes
what is heard: the exact text; every field of
:class:`~smallest_sync.settings.Settings` (voice, model, language, speed and
sample_rate; output_format, since ulaw/alaw decode to other samples than pcm;
word_timestamps, since an entry made without them has no words to replay; a field
added later joins by itself: a needless miss beats wrong audio); the server
(scheme, host and path of ``base_url``: the emulator's tones must not stand in for
the service's speech; the port is left out, since an emulator on port 0 gets a new
one each run; user info and query are dropped); a format version.
Not keyed, and never written: the API key (it changes who pays, not the sound),
callbacks, output device, timeouts, keepalive, stream mode.

Files: one ``<key>.zip`` per phrase, uncompressed, holding ``audio.wav`` (mono
16-bit: ``unzip -p <key>.zip audio.wav > heard.wav``) and ``phrase.json`` (format,
key, sample rate, frame count, words). One file, so one ``os.replace`` publishes an
entry atomically; the zip's CRCs catch truncation and bit rot.

Least recently used goes first: ``get()`` and ``put()`` set the mtime (atime is
often off on noatime/relatime mounts), and ``put()`` deletes the oldest entries
until at most ``max_bytes`` remain.

A cache must never break speaking: a damaged entry is a miss (a warning, and the
file is deleted so the next ``put()`` rewrites it), an unreadable directory is a
miss, and a failed write (disk full, permissions, directory gone) is logged and
``put()`` returns False. Only bad arguments raise.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import threading
import time
import urllib.parse
import wave
import zipfile
from typing import Any, Iterable, List, Optional, Tuple, Union

import numpy as np

from ._types import Pcm
from .errors import ConfigurationError
from .settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["PhraseCache", "CachedPhrase", "Word", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_FORMAT = 1
_SUFFIX = ".zip"
_TEMP_PREFIX = ".tmp-"
_AUDIO, _META = "audio.wav", "phrase.json"
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_STALE_TEMP_S = 3600.0  # a temp file this old was left by a crashed writer; live ones last milliseconds

#: A word and its start and end, in seconds from the start of the phrase.
Word = Tuple[str, float, float]


@dataclasses.dataclass(frozen=True, eq=False)
class CachedPhrase:
    """One phrase read back from the cache.

    Attributes:
        pcm: mono int16 samples, bit-exact as they were put.
        sample_rate: samples per second of ``pcm``.
        words: ``(word, start_s, end_s)`` in order, so word events fire on replay too.
    """

    pcm: Pcm
    sample_rate: int
    words: Tuple[Word, ...]


class PhraseCache:
    """Phrases on disk in ``directory``, at most ``max_bytes`` of them, least recently used evicted.

    Thread-safe and process-safe without locks: writers publish whole files with
    ``os.replace``, so readers see the old entry, the new one, or none; eviction
    and cleanup tolerate files vanishing under them. Every call blocks on disk I/O
    only (milliseconds for a short phrase).

    Raises:
        ConfigurationError: ``max_bytes`` is not a positive int, or ``directory``
            is not a directory and cannot be created.
    """

    def __init__(self, directory: Union[str, "os.PathLike[str]"], *, max_bytes: int = DEFAULT_MAX_BYTES,
                 server: Optional[str] = None) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ConfigurationError(f"max_bytes must be a positive int; got {max_bytes!r}")
        self.directory = os.path.expanduser(os.fspath(directory))  # "~/.cache/..." as users write it
        self.max_bytes = max_bytes
        self.server = server  # the base URL :meth:`key` uses when given none
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:  # FileExistsError when a file is in the way
            raise ConfigurationError(f"cache directory {self.directory!r} is not usable: {exc}") from exc
        self._clock = threading.Lock()  # guards _last_ns
        self._last_ns = 0
        self._warned = False  # one warning per run of failed writes, not one per phrase

    def __repr__(self) -> str:
        return f"PhraseCache({self.directory!r}, max_bytes={self.max_bytes})"

    def key(self, text: str, settings: Settings, *, server: Optional[str] = None) -> str:
        """The entry name for ``text`` spoken with ``settings`` by ``server`` (a base URL;
        by default the cache's own).

        Stable across runs and machines; see the module docstring for what is keyed.
        """
        server = server if server is not None else self.server
        if server is None:
            raise ConfigurationError("key() needs the server's base URL (or a PhraseCache made with server=)")
        parts = urllib.parse.urlsplit(server.strip())
        host = (parts.hostname or "").lower()  # no port: a local emulator gets a new one each run
        canonical = json.dumps(
            {"format": _FORMAT, "text": text, "settings": settings._asdict(),
             "server": f"{parts.scheme.lower()}://{host}{parts.path.rstrip('/')}"},
            sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Optional[CachedPhrase]:
        """The phrase stored under ``key``, or None; a hit becomes the most recently used.

        Never raises for what is on disk: a missing, unreadable or damaged entry is
        a miss, and a damaged one is deleted.
        """
        path = self._path(key)
        try:
            with open(path, "rb") as file:
                identity = os.fstat(file.fileno())
                data = file.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.debug("phrase cache: cannot read %s: %s", path, exc)
            return None
        try:
            phrase = _decode(data, key)
        except Exception as exc:  # whatever zipfile, wave or json make of a damaged file, it is a miss
            logger.warning("phrase cache: ignoring damaged entry %s (%s: %s)", path, type(exc).__name__, exc)
            with contextlib.suppress(OSError):
                # Only if no writer replaced it since we read it: never delete a good entry.
                if os.path.samestat(os.stat(path), identity):
                    os.unlink(path)
            return None
        with contextlib.suppress(OSError):  # evicted meanwhile, or a read-only directory
            self._touch(path)
        return phrase

    def put(self, key: str, pcm: Pcm, sample_rate: int, words: Iterable[Word] = ()) -> bool:
        """Store a phrase under ``key`` (replacing any entry), then evict down to ``max_bytes``.

        Returns:
            True if stored; False if it could not be written (logged, never raised)
            or is alone larger than ``max_bytes``.

        Raises:
            ConfigurationError: ``pcm`` is not a 1-D int16 array or ``sample_rate`` not a positive int.
        """
        path = self._path(key)
        samples = np.asarray(pcm)
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ConfigurationError(f"pcm must be a 1-D int16 array; got {samples.dtype} of shape {samples.shape}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
            raise ConfigurationError(f"sample_rate must be a positive int; got {sample_rate!r}")
        data = _encode(key, samples, sample_rate, [[str(w), float(s), float(e)] for w, s, e in words])
        if len(data) > self.max_bytes:
            logger.debug("phrase cache: %s alone exceeds max_bytes (%d > %d); not kept", key, len(data), self.max_bytes)
            return False
        try:
            fd, temp = tempfile.mkstemp(dir=self.directory, prefix=_TEMP_PREFIX, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                self._touch(temp)
                os.replace(temp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
        except OSError as exc:
            logger.log(logging.DEBUG if self._warned else logging.WARNING,
                       "phrase cache: cannot write to %s (%s); speaking goes on without it", self.directory, exc)
            self._warned = True
            return False
        self._warned = False
        self._evict()
        return True

    def clear(self) -> int:
        """Delete every entry (other files in the directory are left alone); returns how many went."""
        return sum(self._remove(path) for _, path, _ in self._scan())

    def size_bytes(self) -> int:
        """Bytes the entries take on disk now."""
        return sum(size for _, _, size in self._scan())

    def __len__(self) -> int:
        return len(self._scan())

    def _path(self, key: str) -> str:
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ConfigurationError(f"not a cache key (64 hex digits from PhraseCache.key()): {key!r}")
        return os.path.join(self.directory, key + _SUFFIX)

    def _touch(self, path: str) -> None:
        # Strictly increasing, from the wall clock: the kernel's file times are coarse
        # (milliseconds), so phrases used in quick succession would tie.
        with self._clock:
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            now = self._last_ns
        os.utime(path, ns=(now, now))

    def _scan(self, *, sweep: bool = False) -> List[Tuple[int, str, int]]:
        """Entries as ``(mtime_ns, path, size)``, oldest first; ``sweep`` also deletes stale temp files."""
        found: List[Tuple[int, str, int]] = []
        try:
            listing = list(os.scandir(self.directory))
        except OSError:
            return found
        for item in listing:
            try:
                stat = item.stat()
            except OSError:  # another process evicted it between listing and stat
                continue
            if item.name.endswith(_SUFFIX) and _KEY_RE.match(item.name[:-len(_SUFFIX)]):
                found.append((stat.st_mtime_ns, item.path, stat.st_size))
            elif sweep and item.name.startswith(_TEMP_PREFIX) and time.time() - stat.st_mtime > _STALE_TEMP_S:
                self._remove(item.path)
        found.sort()
        return found

    def _evict(self) -> None:
        entries = self._scan(sweep=True)
        total = sum(size for _, _, size in entries)
        for _, path, size in entries:
            if total <= self.max_bytes:
                break
            self._remove(path)
            total -= size  # gone, whether we or a concurrent evictor removed it

    @staticmethod
    def _remove(path: str) -> bool:
        try:
            os.unlink(path)
        except OSError:  # already gone (another evictor), or in use on Windows
            return False
        return True


def _encode(key: str, samples: Pcm, sample_rate: int, words: List[List[Any]]) -> bytes:
    audio = io.BytesIO()
    with wave.open(audio, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    meta = {"format": _FORMAT, "key": key, "sample_rate": sample_rate, "frames": len(samples), "words": words}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(_META, json.dumps(meta))
        archive.writestr(_AUDIO, audio.getvalue())
    return out.getvalue()


def _decode(data: bytes, key: str) -> CachedPhrase:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        meta = json.loads(archive.read(_META))  # read() checks the CRC
        audio = archive.read(_AUDIO)
    if meta["format"] != _FORMAT or meta["key"] != key:
        raise ValueError("written for another format or key")
    with wave.open(io.BytesIO(audio), "rb") as wav:
        if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, meta["sample_rate"]):
            raise ValueError("audio is not mono 16-bit at the recorded sample rate")
        frames = wav.readframes(wav.getnframes())
    if len(frames) != 2 * meta["frames"]:
        raise ValueError(f"audio has {len(frames) // 2} frames, {meta['frames']} expected")
    words = tuple((str(word), float(start), float(end)) for word, start, end in meta["words"])
    return CachedPhrase(np.frombuffer(frames, dtype="<i2").astype(np.int16), int(meta["sample_rate"]), words)
