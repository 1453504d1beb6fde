"""One exception hierarchy for everything smallest_sync raises.

Every error a caller can see derives from :class:`SmallestError`; errors that are
also a kind of builtin error (bad values, timeouts, connection failures) derive
from that builtin too, so ``except ValueError`` or ``except TimeoutError`` keep
working. Messages never contain the API key.
"""
from __future__ import annotations

from typing import Optional

__all__ = [
    "SmallestError",
    "ConfigurationError",
    "AuthenticationError",
    "SmallestConnectionError",
    "CertificateError",
    "APIError",
    "ProtocolError",
    "SynthesisTimeout",
    "AudioDeviceError",
    "SpeakerClosedError",
]


class SmallestError(Exception):
    """Base class of every error raised by smallest_sync."""


class ConfigurationError(SmallestError, ValueError):
    """A setting or an argument is invalid; raised before anything is sent."""


class AuthenticationError(SmallestError):
    """The service refused the API key (HTTP 401/403 on the WebSocket upgrade).

    A Speaker that got this does not retry by itself: a wrong key stays wrong.
    """

    def __init__(self, message: str, *, status_code: Optional[int] = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class SmallestConnectionError(SmallestError, ConnectionError):
    """The WebSocket could not be opened, or was lost while audio was due.

    The underlying network error, when there is one, is ``__cause__``.
    """

    def __init__(self, message: str, *, status_code: Optional[int] = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class CertificateError(SmallestConnectionError):
    """The server's TLS certificate did not verify: the key is not sent there, and
    the Speaker does not try that server again."""


class APIError(SmallestError):
    """The service answered a request with an error frame.

    Attributes:
        message: the server's own text.
        code: the server's error code when it sent one (the ``error`` object shape).
        request_id: the server's id of the failed request, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(f"{message} (code {code})" if code else message)
        self.message = message
        self.code = code
        self.request_id = request_id


class ProtocolError(SmallestError):
    """A server frame could not be understood (not JSON, wrong types, bad audio)."""


class SynthesisTimeout(SmallestError, TimeoutError):
    """No progress (audio, completion, or playback) within the configured timeout."""


class AudioDeviceError(SmallestError):
    """No usable audio output: PortAudio missing, device unknown, or device lost."""


class SpeakerClosedError(SmallestError, RuntimeError):
    """The Speaker was closed; it takes no more text."""
