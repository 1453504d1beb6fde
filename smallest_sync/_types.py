"""Types shared across modules: the PCM alias, and the base of immutable values."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import TypeAlias

    #: Mono 16-bit PCM samples.
    Pcm: TypeAlias = npt.NDArray[np.int16]
else:
    Pcm = np.ndarray  # numpy.typing is slow to import, and here it would serve annotations alone


class Record:
    """An immutable value with fields named by ``__slots__``.

    What ``dataclass(frozen=True)`` would give, without its cost at import time
    (it generates and compiles each class's methods, and ``dataclasses`` itself
    takes a while to import).
    """

    __slots__: Tuple[str, ...] = ()

    def __init__(self, *values: Any) -> None:  # subclasses pass every field, in order
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)

    def _values(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def _asdict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> Tuple[Any, ...]:  # copy and pickle: rebuilt through __init__
        return type(self), self._values()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), *self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"


class AudioCounts:
    """How much of an utterance's audio was queued and handed to the output.

    The player counts into it while the utterance plays (under the player's lock);
    readers on other threads see each count as it was at some recent moment.
    """

    __slots__ = ("fed", "taken", "first_taken_at")

    def __init__(self) -> None:
        self.fed = 0  # samples queued for playing
        self.taken = 0  # samples handed to the output
        self.first_taken_at: Optional[float] = None  # monotonic time of the first one

    def __repr__(self) -> str:
        return f"AudioCounts(fed={self.fed}, taken={self.taken})"
