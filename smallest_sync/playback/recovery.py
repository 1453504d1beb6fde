"""Getting a lost sound card back: reopen it, soon and then less often.

When a device fails (the sound server restarted or died, a USB speaker was
pulled), the player's output thread reopens it as soon as there is audio to play,
and again after a growing pause while that fails. A sound server that is back
before the next utterance costs nothing but the reopen; queued speech waits for it
up to the Speaker's ``timeout`` (the watchdog fails it then). The app hears of
both ends of the outage through ``on_device``.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from .outputs import AudioOutput

logger = logging.getLogger(__name__)

__all__ = ["Reopener", "DeviceListener"]

#: (state, error): ``"lost"`` with the error, then ``"back"`` with None.
DeviceListener = Callable[[str, Optional[BaseException]], None]

_FIRST_RETRY = 0.05
_MAX_RETRY = 1.0


class Reopener:
    """The lost/back state of one output, and when to try it again. Its fields are
    guarded by the player's lock; :meth:`attempt` runs without it."""

    def __init__(self, output: AudioOutput, listener: DeviceListener) -> None:
        self._output, self._listener = output, listener
        self.lost = False
        self._retry_at = 0.0
        self._delay = _FIRST_RETRY

    def lose(self, error: BaseException) -> None:
        """The output failed: it is reopened before anything more is played."""
        self.lost, self._retry_at, self._delay = True, 0.0, _FIRST_RETRY
        logger.warning("the audio device was lost (%s); it is reopened when there is audio to play", error)

    def wait(self, now: float) -> float:
        """Seconds until the next try (≤ 0: now). Lock held."""
        return self._retry_at - now

    def attempt(self) -> bool:
        """Reopen the output; True when it is back. No lock held."""
        try:
            self._output.reopen()
        except NotImplementedError:
            raise
        except Exception as exc:
            logger.info("reopening the audio device failed: %s; trying again in %.2f s", exc, self._delay)
            self._retry_at = time.monotonic() + self._delay
            self._delay = min(self._delay * 2, _MAX_RETRY)
            return False
        self.lost = False
        logger.warning("the audio device is back")
        return True

    def tell(self, state: str, error: Optional[BaseException] = None) -> None:
        """Report a change to the listener (the Speaker's ``on_device``). No lock held."""
        try:
            self._listener(state, error)
        except Exception:  # a bug there must not stop the audio
            logger.exception("device listener failed")
