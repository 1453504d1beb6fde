"""One synthesis request in flight, and how queued text is packed into requests."""
from __future__ import annotations

import time
from typing import Any, Deque, List, Optional

from ..net.connection import Connection, ConnectionClosed
from ..net.protocol import PcmDecoder
from ..text import MAX_CHARS
from .job import Job

__all__ = ["Request", "pack_parts", "join_parts", "describe_closed"]


class Request:
    """One request (or, in context mode, one turn of fragments) on the wire.

    Guarded by the session's lock: the sender thread fills it in, the reader
    thread marks progress on it, ``interrupt()`` cancels it.
    """

    __slots__ = ("job", "utterance", "text", "client_id", "server_id", "decoder", "conn", "progress_at",
                 "complete", "closed", "error", "cancelled", "chunks", "fragment_ids", "end_sent",
                 "quiet_complete")

    def __init__(self, job: Job, text: str, client_id: str) -> None:
        self.job = job
        self.utterance = job.utterance
        self.text = text
        self.client_id = client_id
        self.server_id: Optional[str] = None
        self.decoder = PcmDecoder(job.utterance.settings.output_format)
        self.conn: Optional[Connection] = None
        self.progress_at = time.monotonic()
        self.complete = False
        self.closed: Optional[ConnectionClosed] = None
        self.error: Optional[BaseException] = None
        self.cancelled = False
        self.chunks = 0
        # Context mode: one turn, many fragments (each its own server request).
        self.fragment_ids: List[str] = []
        self.end_sent = False
        self.quiet_complete = False  # the turn's latest frame was a complete

    def owns(self, frame: Any) -> bool:
        """Whether a frame belongs to this request (ids checked when the server sent them)."""
        if frame.external_request_id is not None:
            return bool(frame.external_request_id == self.client_id or frame.external_request_id in self.fragment_ids)
        if self.fragment_ids:
            return True  # a turn's fragments each get a new server id
        if self.server_id is not None and frame.request_id is not None:
            return bool(frame.request_id == self.server_id)
        return True


def pack_parts(parts: Deque[str]) -> int:
    """How many leading ``parts`` fit one request (at least one): fewer, longer
    requests keep prosody together and cost fewer round trips."""
    size, count = len(parts[0]), 1
    while count < len(parts) and size + 1 + len(parts[count]) <= MAX_CHARS:
        size += 1 + len(parts[count])
        count += 1
    return count


_NO_SPACE_AFTER = "。！？।॥"  # scripts that do not put a space between sentences


def join_parts(parts: List[str]) -> str:
    """Join sentences back into one request's text, spaced as their script expects."""
    text = parts[0]
    for part in parts[1:]:
        text += part if text[-1:] in _NO_SPACE_AFTER else " " + part
    return text


def describe_closed(closed: ConnectionClosed) -> str:
    """A short human description of how a socket ended."""
    if closed.code is not None:
        return f"closed by the server with code {closed.code}{': ' + closed.reason if closed.reason else ''}"
    return f"socket error: {closed.cause}" if closed.cause else "socket ended"
