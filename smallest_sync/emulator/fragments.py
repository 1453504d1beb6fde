"""Fragments held per context in ``buffered`` continue mode.

With ``continue_mode="buffered"`` the emulator does not speak a ``continue``
fragment at once: it holds the fragments of a context (keyed by
``context_id``; ``None`` for legacy fragments without one) until the context
is flushed or ended, or until ``max_buffer_delay_ms`` has passed since its
first fragment, then releases them as one request whose text is
:func:`~smallest_sync.emulator.messages.join_fragments` of the fragments.
Event-loop thread only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from .messages import ClientIds, SynthesisParams, join_fragments

__all__ = ["FragmentBuffers", "HeldText"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldText:
    """A context's fragments released as one request.

    ``request`` is the first fragment's message with ``text`` replaced by the
    joined text; ``params`` and ``ids`` are the first fragment's too.
    """

    text: str
    request: Dict[str, Any]
    params: SynthesisParams
    ids: ClientIds


@dataclass(eq=False)
class _Held:
    fragments: List[str]
    first: Dict[str, Any]
    params: SynthesisParams
    ids: ClientIds
    timer: Optional[asyncio.Task[None]] = None


class FragmentBuffers:
    """The held fragments of one connection.

    Args:
        release: called (on the loop thread) with each context's joined text.
    """

    def __init__(self, release: Callable[[HeldText], None]) -> None:
        self._release = release
        self._held: Dict[Optional[str], _Held] = {}

    def __contains__(self, key: Optional[str]) -> bool:
        return key in self._held

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, key: Optional[str], message: Dict[str, Any], text: str,
             params: SynthesisParams, ids: ClientIds, max_delay: float) -> None:
        """Add a fragment; the first one of a context starts its ``max_delay`` timer."""
        held = self._held.get(key)
        if held is not None:
            held.fragments.append(text)
            return
        held = _Held([text], dict(message), params, ids)
        held.timer = asyncio.get_running_loop().create_task(self._expire(key, held, max_delay))
        self._held[key] = held

    def flush(self, key: Optional[str]) -> None:
        """Release a context's fragments as one request (no-op when none are held)."""
        held = self._drop(key)
        if held is not None:
            text = join_fragments(held.fragments)
            self._release(HeldText(text, dict(held.first, text=text), held.params, held.ids))

    def discard(self, key: Optional[str]) -> None:
        """Forget a context's fragments without speaking them."""
        self._drop(key)

    async def aclose(self) -> None:
        """Drop everything and wait for the timers to finish."""
        timers = [held.timer for held in self._held.values() if held.timer is not None]
        self._held.clear()
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)

    def _drop(self, key: Optional[str]) -> Optional[_Held]:
        held = self._held.pop(key, None)
        if held is not None and held.timer is not None and held.timer is not asyncio.current_task():
            held.timer.cancel()
        return held

    async def _expire(self, key: Optional[str], held: _Held, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._held.get(key) is held:
            logger.debug("max_buffer_delay reached for context %s", key)
            self.flush(key)
