"""One WebSocket to the live TTS endpoint, and the thread that reads it.

A :class:`Connection` opens the socket (Bearer auth and identifying headers on the
upgrade), sends under one lock, and runs a named reader thread that parses every
frame and hands the result to a handler. It knows nothing about utterances or
audio: the Speaker decides what frames mean.

Threads: ``smallest-reader`` (one per connection) runs ``recv`` and the handler.
:meth:`Connection.abort` wakes a blocked ``recv`` by shutting the socket down;
:meth:`Connection.close` also joins the reader.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import ssl
import struct
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Union
from urllib.parse import urlsplit

import websocket

from .._types import Record
from .._version import __version__
from ..errors import AuthenticationError, CertificateError, ConfigurationError, ProtocolError, SmallestConnectionError
from .protocol import LIVE_PATH, ServerEvent, parse_frame

logger = logging.getLogger(__name__)

__all__ = ["Connection", "ConnectionClosed", "live_url"]

_JOIN_TIMEOUT = 5.0
#: Largest message accepted. A 150 ms audio chunk is ~10 kB; 16 MB is minutes of audio
#: in one frame. Past it the socket is dropped: a hostile server cannot make us
#: buffer without bound (websocket-client itself has no limit).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_ids = itertools.count(1)


class ConnectionClosed(Record):
    """The socket ended: the server closed it (``code`` set) or it broke (``cause`` set)."""

    __slots__ = ("code", "reason", "cause")
    code: Optional[int]
    reason: str
    cause: Optional[BaseException]

    def __init__(self, code: Optional[int] = None, reason: str = "", cause: Optional[BaseException] = None) -> None:
        super().__init__(code, reason, cause)


#: What the reader hands over: a parsed frame, a frame it could not parse, or the end.
ReaderEvent = Union[ServerEvent, ProtocolError, ConnectionClosed]
Handler = Callable[["Connection", ReaderEvent], None]


def live_url(base_url: str, *, allow_insecure: bool = False) -> str:
    """``{base_url}/waves/v1/tts/live``, checked.

    Plain ``ws://`` would send the API key in clear text, so it is allowed only to
    loopback hosts (the emulator) unless ``allow_insecure`` is set.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigurationError(f"base_url must be a ws:// or wss:// URL; got {base_url!r}")
    if parts.scheme == "ws" and not allow_insecure and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing plain ws:// to {parts.hostname}: the API key would travel unencrypted; "
            "use wss:// or pass allow_insecure=True"
        )
    return base_url.rstrip("/") + LIVE_PATH


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        import ipaddress

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Connection:
    """A live-TTS WebSocket.

    Args:
        url: the full live URL (see :func:`live_url`).
        api_key: sent only in the ``Authorization`` header; never logged or shown.
        handler: called on the reader thread for every frame and once at the end.
        timeout: seconds allowed for the TCP connect, TLS and upgrade.
    """

    def __init__(self, url: str, api_key: str, *, handler: Handler, timeout: float) -> None:
        self.url = url
        self.id = next(_ids)
        self._api_key = api_key
        self._handler = handler
        self._timeout = timeout
        self._ws: Optional[websocket.WebSocket] = None
        self._send_lock = threading.Lock()  # one writer at a time on the socket
        self._aborted = threading.Event()  # set when we end the socket on purpose
        self._closed = threading.Event()  # set when the reader has finished
        self._reader: Optional[threading.Thread] = None
        self.last_send = 0.0  # monotonic time of the last message sent
        self._keepalives_unanswered = 0  # text keepalives a server might still answer
        self._keepalive_lock = threading.Lock()  # guards _keepalives_unanswered
        self._message_bytes = 0  # of the message being read (reader thread)
        self._raw_sock: Optional[socket.socket] = None  # while connecting, for abort()
        self.opened_at = 0.0

    def __repr__(self) -> str:
        state = "open" if self.alive else "closed"
        return f"<Connection #{self.id} {state} {self.url}>"

    def keepalive_sent(self) -> None:
        """A whitespace keepalive went out: some servers answer it with a ``complete``."""
        with self._keepalive_lock:
            self._keepalives_unanswered += 1

    def keepalive_answered(self) -> bool:
        """Take a ``complete`` as the answer to a keepalive, if one is unanswered."""
        with self._keepalive_lock:
            if not self._keepalives_unanswered:
                return False
            self._keepalives_unanswered -= 1
            return True

    def keepalives_answered(self) -> None:
        """A request's own ``complete`` came: earlier keepalives will not be answered now."""
        with self._keepalive_lock:
            self._keepalives_unanswered = 0

    @property
    def alive(self) -> bool:
        """True while the socket is open and being read."""
        return self._reader is not None and not self._closed.is_set() and not self._aborted.is_set()

    def _headers(self) -> List[str]:
        return [
            f"Authorization: Bearer {self._api_key}",
            "X-Source: smallest_sync",
            f"X-Smallest-Sync-Version: {__version__}",
        ]

    def open(self) -> None:
        """Connect and start the reader. Raises AuthenticationError or SmallestConnectionError.

        Redirects are not followed: websocket-client would re-send our headers,
        API key included, to wherever the redirect points (even plain ws://).
        :meth:`abort` from another thread ends a connect that is in progress.
        """
        ws = websocket.WebSocket(
            enable_multithread=True,
            # Frames are parsed as JSON right away, which rejects bad text anyway;
            # the pure-Python UTF-8 check would cost more than the decoding.
            skip_utf8_validation=True,
        )
        self._ws = ws
        try:
            # Our own socket, made where abort() can reach it from the first moment.
            own = None if _proxy_configured() else self._open_socket()
            ws.connect(self.url, header=self._headers(), timeout=self._timeout,  # type: ignore[no-untyped-call]
                       redirect_limit=0, socket=own)
        except websocket.WebSocketBadStatusException as exc:
            ws.shutdown()  # type: ignore[no-untyped-call]
            status = exc.status_code
            if status in (401, 403):
                raise AuthenticationError(
                    f"the service refused the API key (HTTP {status}): {self._scrub(_body_message(exc.resp_body))}",
                    status_code=status,
                ) from None  # the handshake exception carries response headers; nothing of it is needed
            raise SmallestConnectionError(
                f"WebSocket upgrade to {self.url} refused with HTTP {status}", status_code=status
            ) from None
        except ssl.SSLCertVerificationError as exc:
            ws.shutdown()  # type: ignore[no-untyped-call]
            raise CertificateError(
                f"the TLS certificate of {self.url} did not verify ({exc.verify_message}); not sending the key there"
            ) from exc
        except (OSError, websocket.WebSocketException) as exc:
            ws.shutdown()  # type: ignore[no-untyped-call]
            if self._aborted.is_set():
                raise SmallestConnectionError("connecting was abandoned (the Speaker closed)") from None
            raise SmallestConnectionError(f"cannot connect to {self.url}: {self._scrub(str(exc))}") from exc
        status = getattr(ws.handshake_response, "status", 101)
        if status != 101 or self._aborted.is_set():
            ws.shutdown()  # type: ignore[no-untyped-call]
            raise SmallestConnectionError(
                f"WebSocket upgrade to {self.url} answered with HTTP {status}; redirects are not followed",
                status_code=status,
            )
        # Block in recv without a timeout: abort() wakes it, and the Speaker
        # watches for progress with its own deadline.
        ws.settimeout(None)
        self._bound_message_size(ws)
        self.opened_at = self.last_send = time.monotonic()
        self._reader = threading.Thread(
            target=self._read, args=(ws,), name=f"smallest-reader-{self.id}", daemon=True
        )
        self._reader.start()
        logger.debug("connection #%d open to %s", self.id, self.url)

    def _open_socket(self) -> socket.socket:
        """TCP (and, for wss, verified TLS) to the server, abortable throughout.

        websocket-client makes its socket inside ``connect()``, out of abort()'s reach
        until the upgrade is under way; a close() then had to wait out the timeout.
        """
        parts = urlsplit(self.url)
        secure = parts.scheme == "wss"
        host = parts.hostname or ""
        error: Optional[OSError] = None
        for family, kind, proto, _, address in socket.getaddrinfo(host, parts.port or (443 if secure else 80),
                                                                   type=socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            self._raw_sock = sock
            if self._aborted.is_set():
                sock.close()
                break
            sock.settimeout(self._timeout)
            try:
                sock.connect(address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small frames, sent now
            if not secure:
                return sock
            try:
                wrapped = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
            self._raw_sock = wrapped
            return wrapped
        if self._aborted.is_set():
            raise OSError("connecting was abandoned")
        raise error if error is not None else OSError(f"no address for {host}")

    def _bound_message_size(self, ws: websocket.WebSocket) -> None:
        """Count the bytes of the message being read, through the frame reader's
        ``recv`` hook; the reader resets the count after each message."""
        frames: Any = getattr(ws, "frame_buffer", None)
        recv = getattr(frames, "recv", None)
        if not callable(recv):  # a websocket-client without the hook: no limit, say so
            logger.warning("cannot bound message size with this websocket-client version")
            return

        def counted(size: int) -> Any:
            data = recv(size)
            self._message_bytes += len(data)
            if self._message_bytes > MAX_MESSAGE_BYTES:
                raise websocket.WebSocketPayloadException(
                    f"server message over {MAX_MESSAGE_BYTES // (1024 * 1024)} MB; dropping the connection")
            return data

        frames.recv = counted

    def _scrub(self, text: str) -> str:
        """Server-supplied text with our key masked, should a server echo it."""
        return text.replace(self._api_key, "***") if self._api_key else text

    def send(self, text: str) -> None:
        """Send one text frame. Raises SmallestConnectionError if the socket is gone."""
        ws = self._ws
        if ws is None or not self.alive:
            raise SmallestConnectionError("the connection is closed")
        try:
            with self._send_lock:
                ws.send(text)
                self.last_send = time.monotonic()
        except (OSError, websocket.WebSocketException) as exc:
            raise SmallestConnectionError(f"sending failed: {exc}") from exc

    def abort(self) -> None:
        """End the socket now, from any thread, without waiting — also while it is
        still connecting. Frames still in flight are never handed over."""
        self._aborted.set()
        ws = self._ws
        sock = ws.sock if ws is not None and ws.sock is not None else self._raw_sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv() or a handshake in progress
            except OSError:
                pass  # already shut down

    def close(self, timeout: float = 1.0) -> None:
        """Close politely (close frame, wait up to ``timeout`` for the server's), then
        join the reader. Idempotent; safe from the reader's own handler."""
        ws = self._ws
        if ws is not None and self.alive and self._send_lock.acquire(timeout=timeout):
            # (a send stuck on a full TCP window must not hang close: then skip the courtesy)
            try:
                ws.send_close()
            except (OSError, websocket.WebSocketException):
                pass
            finally:
                self._send_lock.release()
            self._closed.wait(timeout)
        self.abort()
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(_JOIN_TIMEOUT)
            if reader.is_alive():
                logger.error("reader thread of connection #%d did not stop", self.id)
        if ws is not None:
            ws.shutdown()  # type: ignore[no-untyped-call]

    def _read(self, ws: websocket.WebSocket) -> None:
        end = ConnectionClosed()
        try:
            while True:
                try:
                    opcode, data = ws.recv_data()
                except (OSError, websocket.WebSocketException, struct.error, ValueError) as exc:
                    end = ConnectionClosed(cause=exc)
                    break
                self._message_bytes = 0
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    end = _close_event(data)
                    break
                if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    continue
                try:
                    event: ReaderEvent = parse_frame(data)
                except ProtocolError as exc:
                    event = exc
                except Exception as exc:  # whatever a hostile frame triggers, the reader lives on
                    event = ProtocolError(f"unparseable frame: {type(exc).__name__}")
                self._deliver(event)
        finally:
            self._closed.set()
            if end.code is not None:
                ws.shutdown()  # type: ignore[no-untyped-call]  # the server closed: release our end now
            if not self._aborted.is_set():
                logger.debug("connection #%d ended: %s", self.id, end)
                self._deliver(end)

    def _deliver(self, event: ReaderEvent) -> None:
        if self._aborted.is_set():
            return
        try:
            self._handler(self, event)
        except Exception:  # a handler bug must not kill the reader
            logger.exception("handling %s failed", type(event).__name__)


def _proxy_configured() -> bool:
    """A proxy in the environment: then websocket-client connects (it knows proxies)."""
    return any(os.environ.get(name) for name in ("http_proxy", "https_proxy", "all_proxy",
                                                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"))


def _close_event(data: Any) -> ConnectionClosed:
    if isinstance(data, (bytes, bytearray)) and len(data) >= 2:
        code = struct.unpack("!H", bytes(data[:2]))[0]
        return ConnectionClosed(code=code, reason=bytes(data[2:]).decode("utf-8", "replace"))
    return ConnectionClosed(code=1005)


def _body_message(body: Optional[bytes]) -> str:
    """The server's explanation from a refused upgrade, short and key-free."""
    if not body:
        return "no explanation given"
    try:
        parsed: Dict[str, Any] = json.loads(body)
        return str(parsed.get("message") or parsed.get("error") or parsed)[:200]
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")
