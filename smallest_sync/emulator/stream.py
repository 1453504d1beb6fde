"""Turning one request's PCM into the byte chunks and word frames to send.

Pure functions, no I/O: the server asks :func:`plan_stream` for the list of
chunks (each with the words to announce just before it) and then only paces
and sends them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from .g711 import alaw_encode, ulaw_encode

__all__ = ["PlannedChunk", "bytes_per_sample", "chunk_bounds", "encode_audio", "plan_stream", "wav_header"]

#: RIFF and data sizes of a stream whose length is not known in advance.
UNKNOWN_SIZE = 0xFFFFFFFF


def wav_header(sample_rate: int) -> bytes:
    """A 44-byte RIFF/WAVE header for streamed 16-bit mono PCM.

    The RIFF and ``data`` chunk sizes are ``0xFFFFFFFF`` because the server
    starts sending before the total length is known (what streaming encoders
    do); decoders must read the data until the stream ends.
    """
    return (
        b"RIFF" + struct.pack("<I", UNKNOWN_SIZE) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data" + struct.pack("<I", UNKNOWN_SIZE)
    )  # fmt: skip


def bytes_per_sample(output_format: str) -> int:
    return 1 if output_format in ("ulaw", "alaw") else 2


def encode_audio(pcm: npt.NDArray[np.int16], output_format: str) -> bytes:
    """Audio payload bytes (without any WAV header) in ``output_format``."""
    if output_format == "ulaw":
        return ulaw_encode(pcm)
    if output_format == "alaw":
        return alaw_encode(pcm)
    if output_format in ("pcm", "wav"):
        return np.asarray(pcm, dtype="<i2").tobytes()
    raise ValueError(f"unsupported output format {output_format!r}")


def chunk_bounds(total: int, chunk_bytes: int, *, odd: bool = False) -> List[Tuple[int, int]]:
    """``(start, end)`` byte ranges covering ``total`` bytes.

    With ``odd``, every boundary falls on an odd offset (so 16-bit samples are
    split across chunks), shifting a would-be even boundary by one byte.
    """
    chunk_bytes = max(chunk_bytes, 2 if odd else 1)
    cuts: List[int] = []
    k = 1
    while k * chunk_bytes < total:
        cut = k * chunk_bytes
        if odd and cut % 2 == 0:
            cut += 1
        if cut < total:
            cuts.append(cut)
        k += 1
    edges = [0, *cuts, total] if total else []
    return list(zip(edges[:-1], edges[1:]))


@dataclass(frozen=True)
class PlannedChunk:
    """One ``chunk`` frame and what precedes it.

    Attributes:
        payload: bytes to base64-encode (the first chunk of ``wav`` includes the header).
        words: indices of the words whose ``word_timestamp`` frames go just before it.
        audio_start: seconds of audio before this chunk (drives pacing).
        samples_sent: whole samples delivered once this chunk is sent.
    """

    payload: bytes
    audio_start: float
    samples_sent: int
    words: List[int] = field(default_factory=list)


def plan_stream(
    pcm: npt.NDArray[np.int16],
    *,
    sample_rate: int,
    output_format: str,
    chunk_ms: float,
    odd_chunks: bool = False,
    word_start_samples: Sequence[int] = (),
) -> List[PlannedChunk]:
    """Split a request's audio into chunks and place its word frames.

    A word's frame goes just before the first chunk that carries (the first
    byte of) the word's start sample, so words and audio arrive in audio-time
    order. Pass no ``word_start_samples`` when no word frames are wanted.
    """
    width = bytes_per_sample(output_format)
    data = encode_audio(pcm, output_format)
    samples_per_chunk = max(1, round(chunk_ms / 1000.0 * sample_rate))
    bounds = chunk_bounds(len(data), samples_per_chunk * width, odd=odd_chunks)
    pending = sorted(range(len(word_start_samples)), key=lambda i: word_start_samples[i])
    chunks: List[PlannedChunk] = []
    for index, (start, end) in enumerate(bounds):
        words: List[int] = []
        while pending and word_start_samples[pending[0]] * width < end:
            words.append(pending.pop(0))
        if index == len(bounds) - 1:
            words.extend(pending)  # a start past the audio still gets announced
            pending = []
        payload = data[start:end]
        if index == 0 and output_format == "wav":
            payload = wav_header(sample_rate) + payload
        chunks.append(PlannedChunk(payload, start / width / sample_rate, end // width, words))
    return chunks
