"""Context mode: a streamed turn's sentences sent as fragments of one ``context_id``.

Each sentence goes out as soon as it is complete with ``continue: true`` (so the
server can join them with continuous prosody), and ``{"text": "", "continue":
false}`` closes the turn. Servers differ on how they say a context is done: the
turn ends at a ``complete`` echoing the last fragment's id, or, without echoes,
once a ``complete`` after the end is followed by quiet (then the socket is
retired, so nothing late can reach the next utterance).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, List, Optional

from ..errors import APIError, SmallestConnectionError, SmallestError, SynthesisTimeout
from ..net.protocol import build_request
from ..net.sockets import SocketPool
from ..utterance import FINAL, SPEAKING
from .options import Options
from .request import Request, describe_closed, join_parts, pack_parts
from .session import Session

if TYPE_CHECKING:
    from ..playback.player import Player

__all__ = ["ContextTurns"]

_CONTEXT_SETTLE = 0.5  # without id echoes: least quiet after a complete that ends a turn
_WAKE_EVERY = 5.0  # seconds; waits on the lock are also woken by every change


class ContextTurns:
    """The sender thread's handling of one context-mode turn (it takes the session's
    lock under the session's contract, like the sender)."""

    def __init__(self, session: Session, pool: SocketPool, player: "Player", options: Options) -> None:
        self._session, self._lock, self._pool, self._player = session, session.lock, pool, player
        self._options = options
        self.timeout = options.timeout

    def _over(self, request: Request) -> bool:
        """Lock held: nothing more is wanted of ``request``."""
        return request.cancelled or request.utterance.state in FINAL or self._session.closing

    def speak(self, request: Request) -> None:
        """Send a streamed turn's sentences as they come, then its end, and wait until
        it has all arrived. Sender thread; ``request`` is already the one in flight."""
        session, job = self._session, request.job
        with session.in_flight(request):
            error = self._send_context(request)
        if error is not None:
            session.fail_after_playback(job, error)
            return
        with self._lock:
            if not request.cancelled:
                session.all_sent(job)

    def _send_context(self, request: Request) -> Optional[BaseException]:
        utterance, job = request.utterance, request.job
        try:
            conn = self._pool.primary()
        except SmallestError as exc:
            return exc
        with self._lock:
            if self._over(request):
                return None
            request.conn, request.progress_at = conn, time.monotonic()
            utterance.state = SPEAKING
        context = {"context_id": request.client_id}
        while True:
            with self._lock:
                parts = job.parts
                while not (self._over(request) or request.error or request.closed or parts or not job.open):
                    self._lock.wait(_WAKE_EVERY)
                if self._over(request):
                    return None
                if request.error is not None or request.closed is not None:
                    break
                pieces: List[str] = []
                while parts:
                    taken = pack_parts(parts)
                    pieces.append(join_parts([parts.popleft() for _ in range(taken)]))
                last = not job.open and not parts
                settings = utterance.settings
            try:
                for piece in pieces:
                    fragment_id = f"{request.client_id}-{len(request.fragment_ids) + 1}"
                    with self._lock:
                        request.fragment_ids.append(fragment_id)
                    conn.send(build_request(piece, settings, request_id=fragment_id,
                                            complete_backoff_ms=self._options.complete_backoff_ms,
                                            extra={**context, "continue": True}))
                    if utterance.sent_at is None:
                        utterance.sent_at = time.monotonic()
                if last:
                    end = build_request("", settings, extra={**context, "continue": False})
                    conn.send(end)
                    with self._lock:
                        request.end_sent = True
                        request.progress_at = time.monotonic()
                    break
            except SmallestConnectionError as exc:
                return exc
        return self._await_turn_end(request)

    def _await_turn_end(self, request: Request) -> Optional[BaseException]:
        """Wait until the turn's audio has all arrived; the error that fails it, if any."""
        utterance, conn = request.utterance, request.conn
        with self._lock:
            settled = False
            while not (request.complete or request.error or request.closed or self._over(request)):
                now = time.monotonic()
                if self._player.paused:
                    request.progress_at = now
                quiet = now - request.progress_at
                # Quiet after a complete ends the turn; how long is scaled to how slowly
                # this server starts a request, so a slow next fragment is not mistaken.
                settle = max(_CONTEXT_SETTLE, 3 * (utterance.time_to_first_chunk or 0.0))
                if request.quiet_complete and quiet >= settle:
                    settled = True
                    break
                if quiet >= self.timeout:
                    self._pool.retire(conn)
                    return SynthesisTimeout(f"the server sent nothing for {self.timeout:.1f} s")
                self._lock.wait((settle if request.quiet_complete else self.timeout) - quiet)
            if request.error is not None:
                if not isinstance(request.error, APIError):
                    self._pool.retire(conn)
                return request.error
            if request.complete or self._over(request):
                return None  # the last fragment's echoed complete: an exact end
            if settled:
                self._pool.retire(conn)  # a guessed end: nothing late may reach the next utterance
                return None
            if request.closed is not None:
                return SmallestConnectionError(
                    f"the connection was lost mid-turn ({describe_closed(request.closed)}); context mode "
                    "needs a socket that stays open for the whole turn")
        return None
