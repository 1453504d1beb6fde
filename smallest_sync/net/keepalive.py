"""The ``smallest-keepalive`` thread: keeps quiet sockets open between requests."""
from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Callable, List, Tuple

from .connection import Connection
from ..errors import SmallestConnectionError
from .protocol import build_keepalive
from ..settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["Keepalive", "KeepaliveTarget"]

#: (socket, style, settings) for each socket that may need a keepalive now.
KeepaliveTarget = Tuple[Connection, str, Settings]


class Keepalive:
    """Sends a keepalive on each socket that has sent nothing for ``interval``.

    ``targets()`` is asked (on this thread, each time it wakes) which sockets are
    idle and in which style to keep them; a socket busy with a request is left
    out by it. The thread waits on ``stop`` (never sleeps), so close() ends it at once.
    """

    def __init__(self, interval: float, targets: Callable[[], List[KeepaliveTarget]],
                 *, session: str, stop: threading.Event) -> None:
        self.interval = interval
        self._targets, self._session, self._stop = targets, session, stop
        self._serials = itertools.count(1)
        # Daemon: a script that forgets close() still exits; Speaker.close() joins it.
        self.thread = threading.Thread(target=self._run, name="smallest-keepalive", daemon=True)

    def _run(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            wait = self.interval
            for conn, style, settings in self._targets():
                quiet_for = time.monotonic() - conn.last_send
                if quiet_for < self.interval:
                    wait = min(wait, max(self.interval - quiet_for, 0.01))
                    continue
                self._send(conn, settings, style)

    def _send(self, conn: Connection, settings: Settings, style: str) -> None:
        try:
            ka_id = f"{self._session}-ka{next(self._serials)}"
            if style == "text":
                conn.keepalive_sent()
            conn.send(build_keepalive(settings, style, request_id=ka_id))
            logger.debug("keepalive sent on connection #%d", conn.id)
        except SmallestConnectionError as exc:
            logger.info("keepalive failed: %s", exc)
