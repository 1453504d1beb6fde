"""``python -m smallest_sync`` is ``smallest-say``."""
from .cli import main

raise SystemExit(main())
