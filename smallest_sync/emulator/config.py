"""The emulator's switches: one mutable dataclass, read at well-defined moments.

Tests mutate an :class:`EmulatorConfig` while the emulator runs. The server
takes a copy (:func:`snapshot`) when it accepts a request, when it answers a
message and when it handles a handshake, so a change applies from the next
request or handshake on and never half-way through one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal, Optional

__all__ = [
    "CompleteMode",
    "ContinueMode",
    "EmulatorConfig",
    "EngineName",
    "ErrorShape",
    "FaultName",
    "KeepaliveReply",
    "MAX_IDLE_TIMEOUT",
    "snapshot",
]

EngineName = Literal["tone", "espeak", "auto"]
CompleteMode = Literal["per_request", "per_burst"]
ContinueMode = Literal["immediate", "buffered"]
ErrorShape = Literal["message", "object"]
KeepaliveReply = Literal["none", "complete"]
FaultName = Literal["drop", "stall", "error", "malformed", "unknown_status", "close"]

#: Upper bound for the ``?timeout=N`` query parameter, in seconds (as documented).
MAX_IDLE_TIMEOUT = 180.0


@dataclass
class EmulatorConfig:
    """Switches of the emulated Waves service. Every field has a default.

    Attributes:
        engine: audio engine: ``"tone"`` (deterministic, the default),
            ``"espeak"`` (espeak-ng) or ``"auto"`` (espeak-ng when installed).
        realtime_factor: audio is sent this many times faster than real time;
            ``0`` sends as fast as the socket allows.
        chunk_ms: audio per ``chunk`` frame, in milliseconds.
        first_chunk_delay: seconds between accepting a request and its first chunk.
        idle_timeout: seconds of inactivity before the server sends the
            "Connection timed out" error frame and closes the socket with code
            1000 (a connection's ``?timeout=N`` overrides it, clamped to 180 s).
        default_complete_backoff_ms: ``complete_backoff_ms`` of requests that
            do not set one.
        default_max_buffer_delay_ms: ``max_buffer_delay_ms`` of buffered
            fragments that do not set one.
        keepalive_reply: ``"none"``: a whitespace-only ``text`` gets no reply;
            ``"complete"``: it gets a ``complete`` frame.
        echo_external_ids: echo client ``request_id``/``session_id`` as
            ``external_request_id``/``external_session_id`` (off = an older server).
        legacy_complete: ``complete`` frames also carry
            ``"message": "All chunks sent", "done": true``.
        word_timestamps_any_voice: every voice emits word timestamps, not only
            those in ``WORD_TIMESTAMP_VOICES``.
        odd_chunks: split the audio byte stream at odd offsets, so chunks end
            in the middle of a sample.
        complete_mode: ``"per_request"`` (one ``complete`` per request) or
            ``"per_burst"`` (one ``complete`` after a burst of queued requests).
        close_after_complete: close the socket cleanly after each ``complete``.
        continue_mode: ``"immediate"`` speaks ``continue``/``context_id``
            fragments at once; ``"buffered"`` holds them until the context ends.
        error_shape: ``"message"``: ``{"status":"error","message":m}``;
            ``"object"``: ``{"status":"error","error":{"message":m,"code":c}}``.
        max_text_chars: reject longer ``text`` when set.
        fault: injected failure applied to every request while set, after
            ``fault_after_chunks`` chunks of it: ``"drop"`` (TCP abort),
            ``"stall"`` (stop sending, keep the socket), ``"error"`` (error
            frame, no complete), ``"malformed"`` (a non-JSON frame, then carry
            on), ``"unknown_status"`` (a ``"mystery"`` frame, then carry on),
            ``"close"`` (clean close with code 1011).
        fault_after_chunks: chunks of a request sent before the fault fires.
        refuse_auth: answer every handshake with 401, even with a good key.
        reject_handshakes: reject the next N WebSocket handshakes with HTTP
            ``reject_status``; the server decrements it on each rejection.
        reject_status: HTTP status used by ``reject_handshakes``.
        handshake_delay: seconds the server waits before answering each
            WebSocket handshake (a slow TLS or proxy path).
    """

    engine: EngineName = "tone"
    realtime_factor: float = 4.0
    chunk_ms: float = 150.0
    first_chunk_delay: float = 0.02
    idle_timeout: float = 60.0
    default_complete_backoff_ms: float = 4000.0
    default_max_buffer_delay_ms: float = 3000.0
    keepalive_reply: KeepaliveReply = "none"
    echo_external_ids: bool = True
    legacy_complete: bool = False
    word_timestamps_any_voice: bool = False
    odd_chunks: bool = False
    complete_mode: CompleteMode = "per_request"
    close_after_complete: bool = False
    continue_mode: ContinueMode = "immediate"
    error_shape: ErrorShape = "message"
    max_text_chars: Optional[int] = None
    fault: Optional[FaultName] = None
    fault_after_chunks: int = 0
    refuse_auth: bool = False
    reject_handshakes: int = 0
    reject_status: int = 503
    handshake_delay: float = 0.0


def snapshot(config: EmulatorConfig) -> EmulatorConfig:
    """Return a private copy of ``config`` (its fields are all immutable values)."""
    return copy.copy(config)
