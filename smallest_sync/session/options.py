"""The Speaker's options that are not voice settings: how it talks to the server."""
from __future__ import annotations

from typing import Any

from .._types import Record
from ..errors import ConfigurationError

__all__ = ["Options"]


class Options(Record):
    """Validated connection options (see ``Speaker`` for what each means)."""

    __slots__ = ("timeout", "keepalive_interval", "keepalive", "complete_backoff_ms", "stream_mode", "standby")
    timeout: float
    keepalive_interval: float
    keepalive: str
    complete_backoff_ms: int
    stream_mode: str
    standby: bool

    def __init__(self, *, timeout: Any, keepalive_interval: Any, keepalive: Any, complete_backoff_ms: Any,
                 stream_mode: Any, standby: Any) -> None:
        for name, value in (("timeout", timeout), ("keepalive_interval", keepalive_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds; got {value!r}")
        if stream_mode not in ("requests", "context"):
            raise ConfigurationError(f"stream_mode must be 'requests' or 'context'; got {stream_mode!r}")
        if keepalive not in ("text", "ping"):
            raise ConfigurationError(f"keepalive must be 'text' or 'ping'; got {keepalive!r}")
        if (isinstance(complete_backoff_ms, bool) or not isinstance(complete_backoff_ms, int)
                or not 0 <= complete_backoff_ms <= 10000):
            raise ConfigurationError(f"complete_backoff_ms must be an int in 0..10000; got {complete_backoff_ms!r}")
        super().__init__(float(timeout), float(keepalive_interval), keepalive, complete_backoff_ms, stream_mode,
                         bool(standby))
