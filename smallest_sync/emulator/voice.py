"""Audio engines: text in, int16 PCM and word timings out.

Two engines:

* ``tone`` - deterministic and exact, so tests can predict every sample: a
  0.03 s lead-in of silence, then per word a sine burst of
  ``(0.12 + 0.045 * len(word)) / speed`` seconds followed by ``0.06 / speed``
  seconds of silence. One frequency per request, picked from
  :data:`TONE_PALETTE` by the CRC-32 of the text, so requests are
  distinguishable by ear and by FFT.
* ``espeak`` - real speech from the ``espeak-ng`` program. Its word timings are
  an *estimate*: espeak-ng does not report them on ``--stdout``, so the voiced
  span (first to last sample above 2 % of the peak) is divided among the words
  in proportion to their length in characters.

:func:`synthesize` and :func:`render` block and are thread-safe; the server
uses :func:`render_async`, which runs espeak-ng as an asyncio subprocess.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import shutil
import subprocess
import wave
import zlib
from dataclasses import dataclass, field
from typing import List, Literal, Optional, Tuple

import numpy as np
import numpy.typing as npt

from .catalog import VOICES

__all__ = [
    "EngineChoice",
    "Synthesis",
    "TONE_PALETTE",
    "WordTiming",
    "render",
    "render_async",
    "resolve_engine",
    "synthesize",
    "tone_frequency",
]

logger = logging.getLogger(__name__)

EngineChoice = Literal["tone", "espeak", "auto"]
WordTiming = Tuple[str, float, float]

#: The 16 frequencies (Hz) of the tone engine.
TONE_PALETTE: List[int] = [300 + 55 * i for i in range(16)]

_LEAD_S = 0.03
_BURST_BASE_S = 0.12
_BURST_PER_CHAR_S = 0.045
_GAP_S = 0.06
_AMPLITUDE = 0.3
_FADE_S = 0.005
_FULL_SCALE = 32767

_ESPEAK_RATE_WPM = 175
_ESPEAK_TIMEOUT_S = 30.0
_ESPEAK_VOICES = {
    "auto": "en-us", "en": "en-us", "hi": "hi", "mr": "mr", "kn": "kn", "ta": "ta",
    "bn": "bn", "gu": "gu", "te": "te", "ml": "ml", "pa": "pa", "or": "or", "es": "es",
    "de": "de", "fr": "fr", "it": "it", "nl": "nl", "sv": "sv", "pt": "pt", "ru": "ru",
    "el": "el", "fi": "fi", "no": "nb", "pl": "pl", "ar": "ar", "zh": "cmn", "id": "id",
    "ja": "ja", "ko": "ko", "ms": "ms", "tr": "tr", "vi": "vi",
}  # fmt: skip
_ESPEAK_FEMALE_VARIANT = "+f3"


@dataclass(frozen=True)
class Synthesis:
    """What an engine produced for one text.

    Attributes:
        pcm: mono int16 samples at the requested rate.
        words: ``(word, start, end)`` in seconds, rounded to 3 decimals.
        word_start_samples: exact sample index where each word starts.
        engine: the engine that actually ran (``"tone"`` after a fallback).
    """

    pcm: npt.NDArray[np.int16]
    words: List[WordTiming] = field(default_factory=list)
    word_start_samples: List[int] = field(default_factory=list)
    engine: str = "tone"


def tone_frequency(text: str) -> float:
    """Frequency (Hz) the tone engine uses for ``text``."""
    return float(TONE_PALETTE[zlib.crc32(text.encode("utf-8")) % len(TONE_PALETTE)])


def resolve_engine(engine: EngineChoice) -> str:
    """Map ``"auto"`` to ``"espeak"`` when espeak-ng is on PATH, else ``"tone"``."""
    if engine == "auto":
        return "espeak" if shutil.which("espeak-ng") else "tone"
    if engine not in ("tone", "espeak"):
        raise ValueError(f"unknown engine {engine!r}")
    return engine


def synthesize(
    text: str,
    *,
    sample_rate: int = 24000,
    speed: float = 1.0,
    voice: str = "meher",
    language: str = "en",
    engine: EngineChoice = "tone",
) -> Tuple[npt.NDArray[np.int16], List[WordTiming]]:
    """Produce exactly the audio and word timings the emulator serves for ``text``.

    Blocks while the engine runs (espeak-ng: a subprocess, typically < 0.1 s).

    Returns:
        ``(pcm, words)``: int16 mono samples and ``(word, start, end)`` seconds.
    """
    result = render(text, sample_rate=sample_rate, speed=speed, voice=voice,
                    language=language, engine=engine)
    return result.pcm, result.words


def render(
    text: str,
    *,
    sample_rate: int = 24000,
    speed: float = 1.0,
    voice: str = "meher",
    language: str = "en",
    engine: EngineChoice = "tone",
) -> Synthesis:
    """Like :func:`synthesize`, with exact word start samples (used by the server)."""
    if sample_rate <= 0 or speed <= 0:
        raise ValueError("sample_rate and speed must be positive")
    if not text.split():
        return Synthesis(np.zeros(0, dtype=np.int16), engine=resolve_engine(engine))
    if resolve_engine(engine) == "espeak":
        speech = _espeak(text, sample_rate=sample_rate, speed=speed, voice=voice, language=language)
        if speech is not None:
            return speech
    return _tone(text, sample_rate=sample_rate, speed=speed)


async def render_async(
    text: str,
    *,
    sample_rate: int = 24000,
    speed: float = 1.0,
    voice: str = "meher",
    language: str = "en",
    engine: EngineChoice = "tone",
) -> Synthesis:
    """:func:`render` for an event loop: espeak-ng runs as an asyncio subprocess."""
    if resolve_engine(engine) == "espeak" and text.split():
        if sample_rate <= 0 or speed <= 0:
            raise ValueError("sample_rate and speed must be positive")
        speech = await _espeak_async(text, sample_rate=sample_rate, speed=speed, voice=voice,
                                     language=language)
        if speech is not None:
            return speech
        engine = "tone"
    return render(text, sample_rate=sample_rate, speed=speed, voice=voice, language=language, engine=engine)


def _tone(text: str, *, sample_rate: int, speed: float) -> Synthesis:
    freq = tone_frequency(text)
    segments: List[npt.NDArray[np.int16]] = []
    words: List[WordTiming] = []
    starts: List[int] = []
    position = round(_LEAD_S * sample_rate)
    segments.append(np.zeros(position, dtype=np.int16))
    gap = np.zeros(round(_GAP_S / speed * sample_rate), dtype=np.int16)
    for word in text.split():
        n = round((_BURST_BASE_S + _BURST_PER_CHAR_S * len(word)) / speed * sample_rate)
        segments.append(_burst(n, freq, sample_rate))
        words.append((word, round(position / sample_rate, 3), round((position + n) / sample_rate, 3)))
        starts.append(position)
        position += n + len(gap)
        segments.append(gap)
    return Synthesis(np.concatenate(segments), words, starts, "tone")


def _burst(n: int, freq: float, sample_rate: int) -> npt.NDArray[np.int16]:
    """A sine burst starting at phase 0 with raised-cosine fades at both ends."""
    t = np.arange(n, dtype=np.float64) / sample_rate
    wave_ = np.sin(2.0 * math.pi * freq * t) * _AMPLITUDE
    fade_n = min(round(_FADE_S * sample_rate), n // 2)
    if fade_n > 0:
        ramp = 0.5 - 0.5 * np.cos(math.pi * np.arange(fade_n) / fade_n)
        wave_[:fade_n] *= ramp
        wave_[n - fade_n:] *= ramp[::-1]
    return np.round(wave_ * _FULL_SCALE).astype(np.int16)


def _espeak_voice(voice: str, language: str) -> str:
    name = _ESPEAK_VOICES.get(language, "en-us")
    info = VOICES.get(voice)
    if info is not None and info.gender == "female":
        name += _ESPEAK_FEMALE_VARIANT
    return name


def _espeak_command(voice: str, language: str, speed: float) -> List[str]:
    """The espeak-ng command line; the text goes through stdin, never argv."""
    return [
        "espeak-ng", "--stdout", "--stdin",
        "-v", _espeak_voice(voice, language),
        "-s", str(int(_ESPEAK_RATE_WPM * speed)),
    ]  # fmt: skip


def _espeak(text: str, *, sample_rate: int, speed: float, voice: str, language: str) -> Optional[Synthesis]:
    """Run espeak-ng (blocking); ``None`` (after a logged warning) when it fails."""
    try:
        proc = subprocess.run(_espeak_command(voice, language, speed), input=text.encode("utf-8"),
                              capture_output=True, timeout=_ESPEAK_TIMEOUT_S, check=False)
        return _espeak_result(text, proc.returncode, proc.stdout, proc.stderr, sample_rate)
    except (OSError, RuntimeError, EOFError, wave.Error, subprocess.SubprocessError) as exc:
        logger.warning("espeak-ng failed (%s); falling back to the tone engine", exc)
        return None


async def _espeak_async(text: str, *, sample_rate: int, speed: float, voice: str,
                        language: str) -> Optional[Synthesis]:
    """Like :func:`_espeak`, as an asyncio subprocess: no thread, killed if cancelled."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *_espeak_command(voice, language, speed), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(text.encode("utf-8")),
                                                    _ESPEAK_TIMEOUT_S)
        except BaseException:  # timeout or cancellation: do not leave the process behind
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        assert proc.returncode is not None
        return _espeak_result(text, proc.returncode, stdout, stderr, sample_rate)
    except (OSError, RuntimeError, EOFError, wave.Error, asyncio.TimeoutError) as exc:
        logger.warning("espeak-ng failed (%s); falling back to the tone engine", exc)
        return None


def _espeak_result(text: str, returncode: int, stdout: bytes, stderr: bytes, sample_rate: int) -> Synthesis:
    """Decode espeak-ng's WAV output; raises on any failure."""
    if returncode != 0:
        raise RuntimeError(f"exit status {returncode}: {stderr.decode('utf-8', 'replace').strip()}")
    with wave.open(io.BytesIO(stdout), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise RuntimeError(f"unexpected sample width {wav.getsampwidth()}")
        source_rate = wav.getframerate()
        channels = wav.getnchannels()
        raw = wav.readframes(1 << 31)  # espeak-ng streams with a bogus frame count
    samples = np.frombuffer(raw[: len(raw) - len(raw) % (2 * channels)], dtype="<i2")
    mono = samples.reshape(-1, channels)[:, 0].astype(np.float64)
    pcm = _resample(mono, source_rate, sample_rate)
    words, starts = _estimate_word_timings(text.split(), pcm, sample_rate)
    return Synthesis(pcm, words, starts, "espeak")


def _resample(x: npt.NDArray[np.float64], source_rate: int, target_rate: int) -> npt.NDArray[np.int16]:
    """Linear-interpolation resampling; plenty for an emulator."""
    if source_rate == target_rate or len(x) == 0:
        return np.clip(np.round(x), -32768, 32767).astype(np.int16)
    n_out = max(1, round(len(x) * target_rate / source_rate))
    positions = np.arange(n_out, dtype=np.float64) * (source_rate / target_rate)
    y = np.interp(positions, np.arange(len(x), dtype=np.float64), x)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def _estimate_word_timings(
    words: List[str], pcm: npt.NDArray[np.int16], sample_rate: int
) -> Tuple[List[WordTiming], List[int]]:
    """Spread the words over the voiced span in proportion to their length."""
    if not words:
        return [], []
    level = np.abs(pcm.astype(np.int32))
    peak = int(level.max()) if len(level) else 0
    voiced = np.flatnonzero(level > max(1, peak // 50))
    first, last = (int(voiced[0]), int(voiced[-1]) + 1) if len(voiced) else (0, len(pcm))
    weights = np.array([len(w) for w in words], dtype=np.float64)
    bounds = first + (last - first) * np.concatenate(([0.0], np.cumsum(weights))) / weights.sum()
    edges = [int(round(b)) for b in bounds]
    timings = [
        (w, round(edges[i] / sample_rate, 3), round(edges[i + 1] / sample_rate, 3))
        for i, w in enumerate(words)
    ]
    return timings, edges[:-1]
