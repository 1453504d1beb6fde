"""Type aliases shared across modules."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Mono 16-bit PCM samples.
Pcm = npt.NDArray[np.int16]
