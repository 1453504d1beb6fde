"""Command line: ``python -m smallest_sync.emulator``.

Prints exactly one line, ``Smallest emulator listening on ws://HOST:PORT``, to
stdout once the server listens (wrappers parse it), then serves until SIGINT or
SIGTERM and exits 0. Diagnostics go to stderr through :mod:`logging`.

The main thread only waits for a signal; the server runs on the emulator's own
thread (see :mod:`smallest_sync.emulator.server`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import List, Optional

from .config import EmulatorConfig
from .server import Emulator

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    defaults = EmulatorConfig()
    p = argparse.ArgumentParser(
        prog="python -m smallest_sync.emulator",
        description="Serve a local emulation of Smallest AI's Waves live TTS WebSocket.")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default)")
    p.add_argument("--api-key", default=None,
                   help="accept only this Bearer token (default: any non-empty token)")
    p.add_argument("--engine", choices=("auto", "tone", "espeak"), default="auto",
                   help="audio engine (default %(default)s: espeak-ng when installed)")
    p.add_argument("--realtime-factor", type=float, default=defaults.realtime_factor,
                   help="send audio this many times faster than real time; 0 = unpaced "
                        "(default %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=defaults.idle_timeout,
                   help="seconds of inactivity before a socket is closed (default %(default)s)")
    p.add_argument("--complete-backoff-ms", type=float, default=defaults.default_complete_backoff_ms,
                   help="default complete_backoff_ms (default %(default)s)")
    p.add_argument("--complete-mode", choices=("per_request", "per_burst"), default=defaults.complete_mode)
    p.add_argument("--close-after-complete", action="store_true",
                   help="close the socket after each complete frame")
    p.add_argument("--continue-mode", choices=("immediate", "buffered"), default=defaults.continue_mode)
    p.add_argument("--error-shape", choices=("message", "object"), default=defaults.error_shape)
    p.add_argument("--no-echo-ids", action="store_true",
                   help="do not echo client request_id/session_id (an older server)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    config = EmulatorConfig(
        engine=args.engine,
        realtime_factor=args.realtime_factor,
        idle_timeout=args.idle_timeout,
        default_complete_backoff_ms=args.complete_backoff_ms,
        complete_mode=args.complete_mode,
        close_after_complete=args.close_after_complete,
        continue_mode=args.continue_mode,
        error_shape=args.error_shape,
        echo_external_ids=not args.no_echo_ids,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with Emulator(config, host=args.host, port=args.port, api_key=args.api_key) as emulator:
        print(f"Smallest emulator listening on {emulator.base_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
