"""Type aliases shared across modules."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import TypeAlias

    #: Mono 16-bit PCM samples.
    Pcm: TypeAlias = npt.NDArray[np.int16]
else:
    Pcm = np.ndarray  # numpy.typing costs ~1 ms at import, for annotations alone
