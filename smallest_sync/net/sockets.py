"""The Speaker's sockets: the primary, an idle standby, and those being retired.

Thread (started here): ``smallest-sockets`` opens the standby and closes retired
sockets in the background, so a request never waits for either. After an
interrupt it waits a moment, and then, if speech was asked for meanwhile, until
that speech is playing: a handshake (a TLS one costs milliseconds of CPU on a
Raspberry Pi) must not compete with the first audio.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, List, Optional, Tuple

from .connection import Connection, Handler
from ..errors import AuthenticationError, CertificateError, SmallestConnectionError, SmallestError, SpeakerClosedError

logger = logging.getLogger(__name__)

__all__ = ["SocketPool"]

CONNECT_ATTEMPTS = 3  # per request; then the utterance fails
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0
# The sockets thread wakes at least this often, so a lost wake-up delays it but never stalls it.
_MAX_IDLE_WAIT = 5.0
# After an interrupt, opening the new standby and closing the old socket wait this
# long, so a request made right after it goes first (see SocketPool._later).
_GRACE = 0.02


class SocketPool:
    """Opens, swaps and retires the Speaker's connections.

    Its own lock guards every attribute; it is held only for short steps, never
    while connecting, closing a socket or calling ``quiet``. Callers may hold their
    own lock when they call in (the Speaker's session does: an ``interrupt()``
    retires the primary and promotes the standby in the same step as it cuts the
    player); the pool never calls out with its lock held. Connecting happens
    without the lock: the primary on the sender thread (when there is no standby to
    promote), the standby on the ``smallest-sockets`` thread; :meth:`detach_all`
    aborts both.

    Attributes:
        conn: the primary socket requests go out on, or None.
        standby_conn: an open, idle socket, promoted when the primary is retired
            so the next request needs no handshake.
        fatal_error: a refused key or an unverifiable certificate: final, so no
            retry storm and no second attempt to hand the key to that server.
        thread: ``smallest-sockets``; :meth:`start` starts it, :meth:`detach_all` stops it.

    ``quiet`` (called on the sockets thread with no pool lock held) says no request
    is waiting for its audio to start playing; whoever makes it true again calls
    :meth:`poke`.
    """

    def __init__(self, url: str, api_key: str, *, handler: Handler, timeout: float,
                 stop: threading.Event, standby: bool, quiet: Callable[[], bool]) -> None:
        self._url, self._api_key, self._handler, self._timeout = url, api_key, handler, timeout
        self._stop, self._quiet = stop, quiet
        self._lock = threading.Lock()
        self.standby = standby
        self.conn: Optional[Connection] = None
        self.standby_conn: Optional[Connection] = None
        self.connecting: List[Connection] = []  # connects in progress, for detach_all() to abort
        self.retired: List[Connection] = []  # aborted sockets whose readers the sockets thread joins
        self.fatal_error: Optional[SmallestError] = None
        self.closed = False
        self._standby_due = standby  # open a standby once a primary is up and all is quiet
        self._not_before = 0.0  # (monotonic) the sockets thread's chores wait until then
        self._awaiting_quiet = False  # the sockets thread has work once ``quiet`` turns true
        self._backoff = BACKOFF_FIRST  # next reconnect delay; reset by a successful connect
        self._standby_backoff = BACKOFF_FIRST  # the same for the standby
        self._wake = threading.Event()  # something for the sockets thread to look at
        # Daemon: a script that forgets close() still exits; Speaker.close() joins it.
        self.thread = threading.Thread(target=self._run, name="smallest-sockets", daemon=True)

    def __repr__(self) -> str:
        return f"SocketPool(conn={self.conn!r}, standby={self.standby_conn!r})"

    # ----- any thread -----------------------------------------------------------------
    def retire(self, conn: Optional[Connection]) -> None:
        """Abort ``conn`` now; the sockets thread closes it (joins its reader) later."""
        if conn is None:
            return
        conn.abort()
        with self._lock:
            self._retire(conn)

    def _retire(self, conn: Connection) -> None:
        if conn not in self.retired:
            self.retired.append(conn)  # closed by the sockets thread (its reader is ending by itself)
            self._later()
        if self.conn is conn:
            self.conn = None

    def replace_primary(self, conn: Optional[Connection]) -> bool:
        """Retire ``conn``, whose stream is stale, and make the standby the primary at
        once; a new standby is opened behind it. True when there was no standby to
        promote: the caller should have a primary opened ahead of need."""
        if conn is not None:
            conn.abort()
        with self._lock:
            if conn is not None:
                self._retire(conn)
            if self.conn is None and self._promote_standby() is None:
                self._standby_due = self.standby  # a standby follows the new primary
                return True
            return False

    def _promote_standby(self) -> Optional[Connection]:
        """Lock held: make an open standby the primary (a new standby will follow)."""
        standby = self.standby_conn
        if standby is None or not standby.alive:
            return None
        self.conn, self.standby_conn = standby, None
        self._standby_due = self.standby
        self._later()
        return standby

    def _later(self) -> None:
        """Lock held: sockets thread chores, after a grace: a request right after an
        interrupt goes first (they then wait until its audio is playing)."""
        self._not_before = time.monotonic() + _GRACE
        self._wake.set()

    def poke(self) -> None:
        """``quiet`` may have turned true; wakes the sockets thread if it waits for that."""
        with self._lock:
            if self._awaiting_quiet:
                self._awaiting_quiet = False
                self._wake.set()

    def _take_retired(self) -> List[Connection]:
        """Lock held: the retired sockets, for the caller to close without the lock."""
        retired, self.retired = self.retired, []
        return retired

    def detach_all(self) -> List[Connection]:
        """Stop for good; abort a connect in progress and hand back every socket for
        the caller to close."""
        with self._lock:
            self.closed = True
            self._wake.set()
            for conn in self.connecting:
                conn.abort()
            sockets = self._take_retired() + [c for c in (self.conn, self.standby_conn) if c is not None]
            self.conn = self.standby_conn = None
        return sockets

    def idle_sockets(self) -> List[Tuple[Connection, bool]]:
        """(socket, is_primary) for every open socket."""
        with self._lock:
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
                    self._wake.set()  # a standby may follow it
                    return conn
            conn.close()
            break
        if error is None or self.closed:
            raise SpeakerClosedError("this Speaker is closed")
        raise error

    # ----- smallest-sockets thread -------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        wait = _MAX_IDLE_WAIT
        while True:
            self._wake.wait(wait)
            with self._lock:
                if self.closed:
                    return
                self._wake.clear()  # under the lock: a change made after this sets it again
                wait = self._chores_wait()
                # From here a poke wakes the thread again, so quiet asked below is never missed.
                self._awaiting_quiet = wait == 0
            if wait:
                continue
            wait = _MAX_IDLE_WAIT
            if not self._quiet():  # the caller's lock: never asked with ours held
                continue
            with self._lock:
                self._awaiting_quiet = False
                if self.closed:
                    return
                primary_up = self.conn is not None and self.conn.alive
                open_standby = self._standby_due and primary_up
                if open_standby:
                    self._standby_due = False
                retired = self._take_retired()
            for old in retired:
                old.close()
            if open_standby:
                self._open_standby()

    def _chores_wait(self) -> float:
        """Lock held: how long until the chores (retired sockets to close, a standby to
        open) may be done: 0 for now, else the wait. They wait out the grace after an
        interrupt, then for quiet (:meth:`poke`)."""
        if self.standby_conn is not None and self.standby_conn.alive:
            self._standby_due = False
        if not (self.retired or self._standby_due):
            return _MAX_IDLE_WAIT
        grace = self._not_before - time.monotonic()
        return min(grace, _MAX_IDLE_WAIT) if grace > 0 else 0.0

    def _open_standby(self) -> None:
        """Open the idle second socket. A failure is logged and tried again after a
        backoff (growing to BACKOFF_MAX), unless it is final (key, certificate)."""
        with self._lock:
            old, self.standby_conn = self.standby_conn, None
        if old is not None:
            old.close()
        try:
            conn = self._open()
        except SmallestError as exc:
            logger.info("could not open a standby connection: %s", exc)
            with self._lock:
                if self.fatal_error is None:
                    self._standby_due = True
                    self._not_before = time.monotonic() + self._standby_backoff
                    self._standby_backoff = min(self._standby_backoff * 2, BACKOFF_MAX)
                    self._wake.set()  # (to wait out that backoff, not the idle wait)
            return
        if conn is None:
            return
        with self._lock:
            self._standby_backoff = BACKOFF_FIRST
            if not self.closed:
                self.standby_conn = conn
                return
        conn.close()

    def next_backoff(self) -> float:
        """The next reconnect delay, with jitter; doubles up to a bound until a connect succeeds."""
        delay = self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        import random  # only once a connect has failed: no program pays its import otherwise

        return delay * random.uniform(0.5, 1.0)

    def _open(self) -> Optional[Connection]:
        """Open a new connection (None when closed first), visible to close() meanwhile.
        A refused key or certificate is remembered as final."""
        conn = Connection(self._url, self._api_key, handler=self._handler, timeout=self._timeout)
        with self._lock:
            if self.closed:
                return None
            self.connecting.append(conn)
        try:
            conn.open()
        except (AuthenticationError, CertificateError) as exc:
            with self._lock:
                self.fatal_error = exc
            raise
        finally:
            with self._lock:
                self.connecting.remove(conn)
        return conn


def _again(error: SmallestError) -> SmallestError:
    """A fresh copy of a remembered final error, so each raise has its own traceback."""
    copy = type(error)(str(error), status_code=getattr(error, "status_code", None))  # type: ignore[call-arg]
    copy.__cause__ = error.__cause__
    return copy
