"""The Speaker's sockets: the primary, an idle standby, and those being retired."""
from __future__ import annotations

import logging
import threading
from typing import List, Optional, Tuple

from .connection import Connection, Handler
from .errors import AuthenticationError, CertificateError, SmallestConnectionError, SmallestError, SpeakerClosedError

logger = logging.getLogger(__name__)

__all__ = ["SocketPool"]

CONNECT_ATTEMPTS = 3  # per request; then the utterance fails
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0


class SocketPool:
    """Opens, swaps and retires the Speaker's connections.

    Every attribute is guarded by ``lock``, the Speaker's condition, because an
    ``interrupt()`` on any thread retires the primary and promotes the standby in
    the same step as it cuts the player. Connecting happens on the sender thread
    only, without the lock; :meth:`close` aborts a connect in progress.

    Attributes:
        conn: the primary socket requests go out on, or None.
        standby_conn: an open, idle socket, promoted when the primary is retired
            so the next request needs no handshake.
        wanted: the sender should open sockets ahead of need.
        fatal_error: a refused key or an unverifiable certificate: final, so no
            retry storm and no second attempt to hand the key to that server.
    """

    def __init__(self, url: str, api_key: str, *, handler: Handler, timeout: float,
                 lock: threading.Condition, stop: threading.Event, standby: bool) -> None:
        self._url, self._api_key, self._handler, self._timeout = url, api_key, handler, timeout
        self._lock, self._stop = lock, stop
        self.standby = standby
        self.conn: Optional[Connection] = None
        self.standby_conn: Optional[Connection] = None
        self.connecting: Optional[Connection] = None  # a connect in progress, for close() to abort
        self.retired: List[Connection] = []  # aborted sockets whose readers the sender joins
        self.fatal_error: Optional[SmallestError] = None
        self.wanted = True  # open a socket ahead of the first request
        self.closed = False
        self._backoff = BACKOFF_FIRST  # next reconnect delay; reset by a successful connect

    def __repr__(self) -> str:
        return f"SocketPool(conn={self.conn!r}, standby={self.standby_conn!r})"

    # ----- lock held ---------------------------------------------------------------
    def retire(self, conn: Optional[Connection]) -> None:
        """Lock held: abort ``conn`` now; the sender closes it (joins its reader) later."""
        if conn is None:
            return
        conn.abort()
        if conn not in self.retired:
            self.retired.append(conn)
        if self.conn is conn:
            self.conn = None

    def replace_primary(self, conn: Optional[Connection]) -> None:
        """Lock held: retire ``conn``, whose stream is stale, and make the standby the
        primary at once; a new standby is opened behind it."""
        self.retire(conn)
        if self.conn is None:
            self._promote_standby()
        self.wanted = True

    def _promote_standby(self) -> Optional[Connection]:
        """Lock held: make an open standby the primary (a new standby will follow)."""
        standby = self.standby_conn
        if standby is None or not standby.alive:
            return None
        self.conn, self.standby_conn = standby, None
        self.wanted = True
        return standby

    def take_retired(self) -> List[Connection]:
        """Lock held: the retired sockets, for the caller to close without the lock."""
        retired, self.retired = self.retired, []
        return retired

    def detach_all(self) -> List[Connection]:
        """Lock held: stop for good; abort a connect in progress and hand back every
        socket for the caller to close without the lock."""
        self.closed = True
        if self.connecting is not None:
            self.connecting.abort()
        sockets = self.take_retired() + [c for c in (self.conn, self.standby_conn) if c is not None]
        self.conn = self.standby_conn = None
        return sockets

    def idle_sockets(self) -> List[Tuple[Connection, bool]]:
        """Lock held: (socket, is_primary) for every open socket."""
        return [(c, c is self.conn) for c in (self.conn, self.standby_conn) if c is not None and c.alive]

    # ----- sender thread -----------------------------------------------------------
    def primary(self) -> Connection:
        """The open primary connection, opening one (with backoff) if needed.

        Raises the final AuthenticationError/CertificateError, the last
        SmallestConnectionError after CONNECT_ATTEMPTS, or SpeakerClosedError.
        """
        with self._lock:
            conn = self.conn
            if conn is not None and conn.alive:
                return conn
            self.conn = None
            if self.fatal_error is not None:
                raise _again(self.fatal_error)
            promoted = self._promote_standby()
        if conn is not None:
            conn.close()
        if promoted is not None:
            return promoted
        error: Optional[SmallestError] = None
        for attempt in range(CONNECT_ATTEMPTS):
            if attempt and self._stop.wait(self.next_backoff()):
                break
            try:
                conn = self._open()
            except SmallestConnectionError as exc:
                logger.info("connect attempt %d failed: %s", attempt + 1, exc)
                error = exc
                continue
            if conn is None:
                break
            with self._lock:
                if not self.closed:
                    self.conn = conn
                    self._backoff = BACKOFF_FIRST
                    return conn
            conn.close()
            break
        if error is None or self.closed:
            raise SpeakerClosedError("this Speaker is closed")
        raise error

    def open_standby(self) -> None:
        """Make sure an idle second socket is open (when enabled); failures are logged."""
        with self._lock:
            old = self.standby_conn
            if not self.standby or self.closed or (old is not None and old.alive):
                return
            self.standby_conn = None
        if old is not None:
            old.close()
        try:
            conn = self._open()
        except SmallestError as exc:
            logger.info("could not open a standby connection: %s", exc)
            return
        if conn is None:
            return
        with self._lock:
            if not self.closed:
                self.standby_conn = conn
                return
        conn.close()

    def next_backoff(self) -> float:
        """The next reconnect delay, with jitter; doubles up to a bound until a connect succeeds."""
        delay = self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        import random  # only once a connect has failed: ~1 ms at import for every program otherwise

        return delay * random.uniform(0.5, 1.0)

    def _open(self) -> Optional[Connection]:
        """Open a new connection (None when closed first), visible to close() meanwhile.
        A refused key or certificate is remembered as final."""
        conn = Connection(self._url, self._api_key, handler=self._handler, timeout=self._timeout)
        with self._lock:
            if self.closed:
                return None
            self.connecting = conn
        try:
            conn.open()
        except (AuthenticationError, CertificateError) as exc:
            with self._lock:
                self.fatal_error = exc
            raise
        finally:
            with self._lock:
                self.connecting = None
        return conn


def _again(error: SmallestError) -> SmallestError:
    """A fresh copy of a remembered final error, so each raise has its own traceback."""
    copy = type(error)(str(error), status_code=getattr(error, "status_code", None))  # type: ignore[call-arg]
    copy.__cause__ = error.__cause__
    return copy
