"""The ``smallest-watchdog`` thread: fails what nothing can move on any more.

Every wait in the library has a timeout, and waiting on an utterance is bounded
too: this thread fails it when the audio output takes nothing for the Speaker's
``timeout`` while audio waits (a sound server that died, a card unplugged, an
output callback that never returns), or when the sender thread has died. The
server's own silence is the sender's to judge (SynthesisTimeout).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..errors import AudioDeviceError, SpeakerClosedError
from .session import Session

if TYPE_CHECKING:
    from ..playback.player import Player

logger = logging.getLogger(__name__)

__all__ = ["Watchdog"]

_CHECKS_PER_TIMEOUT = 4  # so a stall is caught within 1.25 timeouts


class Watchdog:
    """Checks the output's progress and the sender's life a few times per ``timeout``."""

    def __init__(self, session: Session, player: "Player", sender: threading.Thread, *,
                 timeout: float, stop: threading.Event) -> None:
        self._session, self._player, self._sender = session, player, sender
        self._timeout, self._stop = timeout, stop
        # Daemon: a script that forgets close() still exits; Speaker.close() joins it.
        self.thread = threading.Thread(target=self._run, name="smallest-watchdog", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._timeout / _CHECKS_PER_TIMEOUT):
            try:
                self.check()
            except Exception:  # a bug here must not end the watch
                logger.exception("watchdog check failed")

    def check(self) -> None:
        """Fail every utterance that cannot move on."""
        if not self._sender.is_alive():
            if not self._session.closing:
                self._session.fail_all(SpeakerClosedError("the Speaker's sender thread has stopped"))
            return
        if self._player.stalled_for(time.monotonic()) < self._timeout:
            return
        logger.error("the audio output took nothing for %.1f s", self._timeout)
        self._session.fail_all(AudioDeviceError(f"the audio output took no samples for {self._timeout:.1f} s"))
